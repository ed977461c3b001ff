"""Snakemake script: build the dataset's memory-mapped feature store (models.data.dataset.FeatureStore)."""

import logging
from functools import partial
from pathlib import Path

from models.data.dataset import FeatureStore, load_video_features
from models.run.pipeline import log_to_file

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
root = Path(snakemake.output.store).parent
store = FeatureStore.build(
    snakemake.output.store,
    list(snakemake.params.videos),
    partial(load_video_features, root=root, layout="ours", visual=snakemake.params.visual),
    meta={"dataset": snakemake.wildcards.ds, "visual": snakemake.params.visual},
)
logging.info("feature store %s: %d videos", snakemake.output.store, len(store))
