# Config access, recipe per dataset, and video discovery. Discovery runs at DAG-build time: every video
# file in a dataset's folder is probed once (PyAV, cached by size+mtime); files that cannot be decoded
# (zero-byte, text renamed .mp4, truncated, audio-only, shorter than one window) are left out of the DAG
# and listed with their reason in logs/<ds>/rejected_videos.tsv and in the summary report. Everything
# else (including videos without audio) goes through the per-video rules.

import functools
import json
import re
import os
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from extractors import discovery
from extractors.recipes import get_recipe

wildcard_constraints:
    ds="[A-Za-z0-9_-]+",
    model="[A-Za-z0-9_-]+",
    vid="[^/]+",
    kind="i3d|vggish|r21d",


DATASETS = config.get("datasets", {})
WEIGHTS_ROOT = config.get("weights_root", "resources/weights")
DEVICE = config.get("device", "auto")
EXTENSIONS = config.get("extensions", discovery.DEFAULT_EXTENSIONS)


@functools.cache
def recipe(ds):
    return get_recipe(DATASETS[ds]["recipe"], **DATASETS[ds].get("recipe_overrides", {}))


@functools.cache
def extraction_recipe_json(ds):
    """The recipe fields that decide features, as deterministic JSON: a rule param, so editing any of
    them reruns the feature jobs (and nothing else) under the default --rerun-triggers."""
    return json.dumps(discovery.extraction_fields(recipe(ds)), sort_keys=True)


def videos_dir(ds):
    return discovery.resolve_videos_dir(DATASETS[ds]["videos"])


_DISCOVERED = {}


def discover(ds):
    """Accepted and rejected videos of ``ds``, found once per invocation (memoised: every per-video
    input function calls this, so scanning the folder per call would make the DAG quadratic). Waits for
    the demo generator; the rejection log is written here, once."""
    if ds not in _DISCOVERED:
        if "generate_demo" in DATASETS[ds]:
            checkpoints.demo_data.get(ds=ds)  # raises until the generator has run: nothing memoised
        found = discovery.discover(videos_dir(ds), EXTENSIONS, min_duration_s=recipe(ds).window_s,
                                   cache=Path("results") / ds / "probe_cache.json")
        discovery.write_rejections(found.rejected, Path("logs") / ds / "rejected_videos.tsv")
        _DISCOVERED[ds] = found
    return _DISCOVERED[ds]


def videos(ds):
    """{video_id: source path} of the decodable videos of ``ds``."""
    return discover(ds).accepted


def rejected(ds):
    return discover(ds).rejected


def source_video(wildcards):
    return str(videos(wildcards.ds)[wildcards.vid])


def visual_kind(ds):
    return recipe(ds).visual


def feature_kinds(ds):
    return [visual_kind(ds), "vggish"]


def training_datasets():
    return [ds for ds, spec in DATASETS.items() if spec.get("models")]


def prediction_datasets():
    return [ds for ds, spec in DATASETS.items() if "predict_with" in spec]


def feature_files(ds):
    return [f"results/{ds}/features/{kind}/{vid}.npy" for vid in videos(ds) for kind in feature_kinds(ds)]


def threads_for_torch(wildcards, threads):
    return threads


def all_targets(wildcards):
    targets = []
    for ds in training_datasets():
        targets += expand("results/{ds}/models/{model}/metrics.json", ds=ds, model=DATASETS[ds]["models"])
        targets.append(f"results/{ds}/compare.md")
        targets.append(f"results/{ds}/summary.html")
    for ds in prediction_datasets():
        model = DATASETS[ds]["predict_with"]["model"]
        targets += [f"results/{ds}/predictions/{model}/{vid}.json" for vid in videos(ds)]
        targets.append(f"results/{ds}/summary.html")
    for name, spec in config.get("avvp", {}).items():
        targets.append(f"results/avvp/{name}/summary.html")
    return targets
