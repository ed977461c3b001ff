"""Snakemake script: build the dataset's memory-mapped feature store (models.data.dataset.FeatureStore) from
this run's features or from a feature release (`features: {from, layout, prefix}`)."""

import logging
from functools import partial

from models.data.dataset import FeatureStore, load_video_features
from models.run.pipeline import log_to_file

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
src = snakemake.params.source
missing = list(snakemake.params.missing)
store = FeatureStore.build(
    snakemake.output.store,
    list(snakemake.params.videos),
    partial(load_video_features, root=src["root"], layout=src["layout"], visual=snakemake.params.visual,
            prefix=src["prefix"]),
    meta={"dataset": snakemake.wildcards.ds, "visual": snakemake.params.visual, "source": dict(src),
          "annotated_without_features": missing},
)
logging.info("feature store %s: %d videos from %s (%s layout); %d annotated videos without features",
             snakemake.output.store, len(store), src["root"], src["layout"], len(missing))
