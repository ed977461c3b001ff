"""Snakemake script: build the dataset's memory-mapped feature store (models.data.FeatureStore)."""

import logging
from functools import partial
from pathlib import Path

from models.data import FeatureStore, load_video_features

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
root = Path(snakemake.output.store).parent
store = FeatureStore.build(
    snakemake.output.store,
    list(snakemake.params.videos),
    partial(load_video_features, root=root, layout="ours", visual=snakemake.params.visual),
    meta={"dataset": snakemake.wildcards.ds, "visual": snakemake.params.visual},
)
logging.info("feature store %s: %d videos", snakemake.output.store, len(store))
