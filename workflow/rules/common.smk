# Config access, recipe per dataset, and video discovery. Discovery runs at DAG-build time: every video
# file in a dataset's folder is probed once (PyAV, cached by size+mtime); files that cannot be decoded
# (zero-byte, text renamed .mp4, truncated, audio-only, shorter than the recipe's min_duration_s, a name
# with braces or control characters, a dangling symlink) are left out of the DAG and listed with their
# reason in logs/<ds>/rejected_videos.tsv and in the summary report. Everything else (including videos
# without audio) goes through the per-video rules; one that fails there on its own content gets a failure
# record (extractors/extract.py), is left out of the store and listed in logs/<ds>/failed_videos.tsv.
#
# A dataset can instead say where its features already are (`features: {from: <folder>, layout:
# unav_release | ours, prefix: ""}`): no video, no media or feature job; the annotated videos whose feature
# files are all there go straight into the store (models.data.features.find_features), the others are listed
# with the missing files in logs/<ds>/missing_features.tsv and the summary, and at evaluation their ground
# truth counts as missed (models.run.pipeline.load_splits), as in the reference evaluator.

import functools
import json
import re
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import IncompleteCheckpointException, WorkflowError

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


def features_source(ds):
    """``{from, layout, prefix}`` of a dataset whose features already exist (a release folder or another
    run's ``results/<ds>``), else None."""
    src = DATASETS[ds].get("features")
    if src is None:
        return None
    if "annotations" not in DATASETS[ds]:
        raise WorkflowError(f"dataset {ds!r}: `features:` needs `annotations:` (the videos are the annotated ones)")
    if "predict_with" in DATASETS[ds]:
        raise WorkflowError(f"dataset {ds!r}: `predict_with` needs videos (their media manifests give durations)")
    return {"from": src["from"], "layout": src.get("layout", "ours"), "prefix": src.get("prefix", "")}


def source_feature_paths(ds, vid):
    from models.data.features import feature_paths  # imported on use: demo-only DAGs skip it

    src = features_source(ds)
    return feature_paths(vid, src["from"], src["layout"], visual_kind(ds), "vggish", src["prefix"])


def discover_features(ds):
    """Accepted (every feature file present) and missing annotated videos of a features-only dataset;
    one directory listing per feature folder, so 10k videos cost milliseconds."""
    from models.data.features import find_features
    from models.run.pipeline import read_annotations

    src = features_source(ds)
    ann = read_annotations(DATASETS[ds]["annotations"], recipe(ds))
    if not Path(src["from"]).is_dir() or (src["layout"] == "ours" and not Path(src["from"], "features").is_dir()):
        raise WorkflowError(f"dataset {ds!r}: feature folder {src['from']} (layout {src['layout']}) not found")
    found, missing = find_features(sorted(ann), src["from"], src["layout"], visual_kind(ds), "vggish", src["prefix"])
    if not found:
        raise WorkflowError(f"dataset {ds!r}: none of the {len(ann)} annotated videos has features under "
                            f"{src['from']} (layout {src['layout']}); first missing: {next(iter(missing.values()), '')}")
    if missing:
        print(f"[avloc] {ds}: {len(missing)} of {len(ann)} annotated videos have no features "
              f"(logs/{ds}/missing_features.tsv); their ground truth counts as missed", file=sys.stderr)
    discovery.write_rejections(missing, Path("logs") / ds / "missing_features.tsv")
    return discovery.Discovery(accepted={v: source_feature_paths(ds, v)[0] for v in found}, rejected=missing)


_DISCOVERED = {}


def discover(ds):
    """Accepted and rejected videos of ``ds``, found once per invocation (memoised: every per-video
    input function calls this, so scanning the folder per call would make the DAG quadratic). Waits for
    the demo generator; the rejection log is written here, once."""
    if ds not in _DISCOVERED and features_source(ds) is not None:
        _DISCOVERED[ds] = discover_features(ds)
    if ds not in _DISCOVERED:
        if "generate_demo" in DATASETS[ds]:
            checkpoints.demo_data.get(ds=ds)  # raises until the generator has run: nothing memoised
        found = discovery.discover(videos_dir(ds), EXTENSIONS, min_duration_s=recipe(ds).min_duration_s,
                                   cache=Path("results") / ds / "probe_cache.json")
        discovery.write_rejections(found.rejected, Path("logs") / ds / "rejected_videos.tsv")
        _DISCOVERED[ds] = found
    return _DISCOVERED[ds]


def videos(ds):
    """{video_id: source path} of the decodable videos of ``ds`` (of a features-only dataset: the annotated
    videos with features, each with its first feature file)."""
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
    if features_source(ds) is not None:
        return [str(p) for vid in videos(ds) for p in source_feature_paths(ds, vid)]
    return [f"results/{ds}/features/{kind}/{vid}.npy" for vid in videos(ds) for kind in feature_kinds(ds)]


def threads_for_torch(wildcards, threads):
    return threads


def record_files(ds):
    """Each video's media manifest and feature provenance: the files that hold a failure record when the
    video failed in its own job. Targets of `all` so that deleting one retries the video (Snakemake does not
    rerun a missing intermediate file whose consumers are up to date)."""
    if features_source(ds) is not None:
        return []
    try:
        vids = videos(ds)
    except IncompleteCheckpointException:  # demo data not generated yet: no record exists yet either, and
        return []  # raising here would hold back every other target of `all` until the checkpoint has run
    return [f"results/{ds}/media/{vid}.json" for vid in vids] + [
        f"results/{ds}/features/{kind}/{vid}.json" for vid in vids for kind in feature_kinds(ds)]


def all_targets(wildcards):
    targets = []
    for ds in training_datasets():
        targets += expand("results/{ds}/models/{model}/metrics.json", ds=ds, model=DATASETS[ds]["models"])
        targets.append(f"results/{ds}/compare.md")
        targets.append(f"results/{ds}/summary.html")
        targets += record_files(ds)
    for ds in prediction_datasets():
        model = DATASETS[ds]["predict_with"]["model"]
        targets += [f"results/{ds}/predictions/{model}/{vid}.json" for vid in videos(ds)]
        targets.append(f"results/{ds}/summary.html")
        targets += record_files(ds)
    for name, spec in config.get("avvp", {}).items():
        targets.append(f"results/avvp/{name}/summary.html")
    for ds in reproduce_datasets():  # workflow/rules/reproduce.smk
        targets += [f"results/{ds}/reproduce.md", f"results/{ds}/reproduce.csv"]
    return targets
