"""LAION-CLAP audio and text encoders (HTSAT + RoBERTa), re-implemented without the ``laion_clap`` package.

The port, one file per part as laion_clap lays it out: :mod:`.frontend` (10 s input, STFT, mel filterbanks),
:mod:`.htsat` (the Swin audio tower), :mod:`.roberta` (the text tower), :mod:`.tokenizer` (byte-level BPE) and
:mod:`.model` (the CLAP head, the checkpoint converter, :func:`build_clap`); :mod:`.recipe` is VALOR's per-second
recipe on top of it, the part :mod:`extractors.llp.features` calls.

Why a port: the ``laion_clap`` package requires ``numpy<2`` (it would downgrade this environment's numpy under
the pinned torch) and pulls wandb/librosa/torchlibrosa/webdataset/transformers (README "Packages"); so the
architecture is written here from the LAION-CLAP paper (Wu et al., ICASSP 2023) and the layout of
its reference code (``src/laion_clap/clap_module/{htsat,model,feature_fusion}.py``, ``hook.py``,
``training/data.py``). Module and parameter names follow that code exactly, so an official checkpoint
loads with ``load_state_dict(strict=True)`` after :func:`convert_laion_clap` (drop the DataParallel
``module.`` prefix and the ``text_branch.embeddings.position_ids`` buffer that transformers >= 4.31 no
longer stores, exactly what laion_clap's own ``load_state_dict`` does).

Checked (random weights, ``tests/test_clap.py``; the Hugging Face comparisons need the ``test`` extra's
``transformers``/``tokenizers`` and run in CI): against Hugging Face's independent ports (transformers 5.25),
audio embeddings of ``ClapModel`` (fused HTSAT-tiny, weights renamed; short inputs and the > 10 s ``is_longer``
fusion path) agree within rtol 1e-4 / atol 1e-5, ``ClapFeatureExtractor`` log-mels (fusion/HTK, ``frequency_min=50``
as laion_clap; HF's default is 0) within 5e-3 dB, ``RobertaModel``'s ``pooler_output`` within 1e-5, and the BPE ids
and masks equal the slow ``RobertaTokenizer``'s and ``tokenizers``' ``ByteLevelBPETokenizer``'s. The fusion branch
is also checked against a hand computation of the ``aff_2d`` patch embedding (patches as matrix products, AFF in
eval mode) and the chunk choice against the whole mel. Not checked here: the real checkpoint files (no network),
so numbers against laion_clap's released embeddings are unverified.
"""

from extractors.llp.clap.frontend import (
    CLIP_SAMPLES,
    SAMPLE_RATE,
    dft_kernels,
    htk_mel_filterbank,
    power_to_db,
    quantize_int16,
    repeatpad,
    slaney_mel_filterbank,
)
from extractors.llp.clap.htsat import (
    AFF,
    HTSAT,
    HTSAT_CONFIGS,
    HTSATConfig,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from extractors.llp.clap.model import (
    CLAP,
    CLAP_CHECKPOINTS,
    DEFAULT_CHECKPOINT,
    TOKENIZER_FILES,
    MLPLayers,
    WeightsMode,
    build_clap,
    convert_laion_clap,
)
from extractors.llp.clap.recipe import (
    WINDOW_SEGMENTS,
    clap_audio_features,
    clap_feature_maps,
    clap_text_embeddings,
    default_n_segments,
    maps_to_seconds,
    segment_bounds,
    valor_window,
    window_bounds,
)
from extractors.llp.clap.roberta import RobertaConfig, RobertaEncoder
from extractors.llp.clap.tokenizer import MAX_TEXT_LEN, ByteFallbackTokenizer, RobertaBPETokenizer

__all__ = [
    "AFF", "CLAP", "CLAP_CHECKPOINTS", "CLIP_SAMPLES", "DEFAULT_CHECKPOINT", "HTSAT", "HTSAT_CONFIGS", "MAX_TEXT_LEN",
    "SAMPLE_RATE", "TOKENIZER_FILES", "WINDOW_SEGMENTS", "ByteFallbackTokenizer", "HTSATConfig", "MLPLayers",
    "RobertaBPETokenizer", "RobertaConfig", "RobertaEncoder", "WeightsMode", "WindowAttention", "build_clap",
    "clap_audio_features", "clap_feature_maps", "clap_text_embeddings", "convert_laion_clap", "default_n_segments",
    "dft_kernels", "htk_mel_filterbank", "maps_to_seconds", "power_to_db", "quantize_int16", "relative_position_index",
    "repeatpad", "segment_bounds", "shifted_window_mask", "slaney_mel_filterbank", "valor_window", "window_bounds",
    "window_partition", "window_reverse",
]
