"""Snakemake script: build the dataset's memory-mapped feature store (models.data.store.FeatureStore) from
this run's features or from a feature release (`features: {from, layout, prefix}`). Videos whose feature job
published a failure record (extractors.errors.read_failure) are left out, kept in the store's meta and listed
in logs/<ds>/failed_videos.tsv (video, stage, reason)."""

import logging
from functools import partial
from pathlib import Path

from extractors.discovery import tsv_text
from extractors.errors import read_failure
from extractors.io import write_text
from models.data.features import load_video_features
from models.data.store import FeatureStore
from models.run.pipeline import log_to_file
from models.run.progress import Heartbeat

snakemake = globals()["snakemake"]
log_to_file(snakemake.log[0])
src = snakemake.params.source
missing = list(snakemake.params.missing)
videos = list(snakemake.params.videos)
failed = {}
if src["layout"] == "ours":
    for vid in videos:
        record = read_failure(Path(src["root"], "features", snakemake.params.visual, f"{src['prefix']}{vid}.json"))
        if record is not None:
            failed[vid] = record
write_text(Path(snakemake.log[0]).parent / "failed_videos.tsv",
           tsv_text(["video", "stage", "reason"], [[v, r["stage"], r["failed"]] for v, r in sorted(failed.items())]))
kept = [v for v in videos if v not in failed]
beat = Heartbeat(f"feature store {snakemake.wildcards.ds}: videos read", len(kept))
load = partial(load_video_features, root=src["root"], layout=src["layout"], visual=snakemake.params.visual,
               prefix=src["prefix"])


def load_with_progress(vid):
    features = load(vid)
    beat.tick()
    return features


store = FeatureStore.build(
    snakemake.output.store,
    kept,
    load_with_progress,
    meta={"dataset": snakemake.wildcards.ds, "visual": snakemake.params.visual, "source": dict(src),
          "annotated_without_features": missing, "failed": failed},
)
beat.finish()
logging.info("feature store %s: %d videos from %s (%s layout); %d annotated videos without features; "
             "%d videos failed extraction (%s)", snakemake.output.store, len(store), src["root"], src["layout"],
             len(missing), len(failed), Path(snakemake.log[0]).parent / "failed_videos.tsv")
for vid, record in sorted(failed.items()):
    logging.warning("left out %s: failed at the %s stage: %s", vid, record["stage"], record["failed"])
