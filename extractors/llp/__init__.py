"""LLP per-second features: one 1 s segment -> one vector (ResNet-152, R(2+1)D, CLIP, VGGish, CLAP).

- :mod:`extractors.llp.prompts` -- the class prompts shared by CLIP and CLAP text embeddings.
- :mod:`extractors.llp.clap` -- the LAION-CLAP port (one module per part: front end, HTSAT, RoBERTa,
  tokenizer, model) and VALOR's per-second recipe on it (:mod:`extractors.llp.clap.recipe`).
- :mod:`extractors.llp.features` -- per-second visual/audio features and CLIP.
- :mod:`extractors.llp.extract` -- the CLI: one clip -> one ``.npz`` of per-second features (a per-clip job).

Assembling these features into EAR's inputs is the training side's job (:mod:`models.avvp.inputs`).
"""
