# Every input function, shared import and config-derived constant of the workflow, one section per rule file
# (the snakemake-workflows layout: rule files hold rules). Included first by the Snakefile, so every rule
# file can use any name defined here; nothing here calls into a rule file.
#
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

import yaml
from snakemake.exceptions import IncompleteCheckpointException, WorkflowError

from extractors import discovery, registry
from extractors.recipes import get_recipe
from extractors.weight_registry import REGISTRY
from models.run.code_fingerprint import code_fingerprint
from models.run.names import run_name, split_control, split_seed
from models.run import slurm_status

# snakemake-executor-plugin-slurm reads sacct's `CANCELLED by <uid>` as a running job (Snakemake then waits
# for ever after `scancel`): read the state word instead (models/run/slurm_status.py, docs/cluster.md)
slurm_status.install()

# a user's extractors (config `extractor_modules:`, docs/extending.md): registered before anything asks for names
EXTRACTOR_MODULES = config.get("extractor_modules", [])
registry.load_modules(EXTRACTOR_MODULES)

wildcard_constraints:
    ds="[A-Za-z0-9_-]+",
    model="[A-Za-z0-9_-]+",
    vid="[^/]+",
    kind="|".join(registry.EXTRACTORS),


class Datasets(dict):
    """config["datasets"]; a name that is not there (a target such as results/<typo>/compare.md) says so
    and lists the configured ones, rather than a KeyError."""

    def __missing__(self, ds):
        raise WorkflowError(f"unknown dataset {ds!r} in a target (results/<dataset>/...); "
                            f"datasets in the config: {', '.join(sorted(self)) or 'none'}")


DATASETS = Datasets(config.get("datasets", {}))
WEIGHTS_ROOT = config.get("weights_root", "resources/weights")
DEVICE = config.get("device", "auto")
EXTENSIONS = config.get("extensions", discovery.DEFAULT_EXTENSIONS)
# Under profiles/slurm (its `config: cluster_names: true`): names a cluster job's command line cannot carry
# are left out at discovery with their reason (extractors.discovery.cluster_name_reason), not at submission.
CLUSTER_NAMES = config.get("cluster_names", False)


def untracked(value):
    """A param holding ``value`` that is no rerun trigger. Why: the device and the weights folder reach the
    shell commands as params (no global in a shell command: `snakemake --lint` is clean), but moving a run
    from cpu to cuda, or the weight files to another folder, must not re-extract every video. Snakemake
    records only params not computed by a function that takes `input`, `output`, `threads` or `resources`
    (snakemake/rules.py `_is_deriving_function`, persistence `_params` over `job.non_derived_params`);
    such a param is taken to follow from what is tracked already. The weight files themselves are inputs,
    so they are tracked by file. tests/test_workflow.py (incremental reruns) checks that changing either
    reruns nothing."""
    return lambda wildcards, resources: value


@functools.cache
def recipe(ds):
    r = get_recipe(DATASETS[ds]["recipe"], **DATASETS[ds].get("recipe_overrides", {}))
    if r.visual not in registry.visual_names():
        raise WorkflowError(f"dataset {ds!r}: visual extractor {r.visual!r} is not registered; known: "
                            f"{registry.visual_names()} (a user's extractor file goes under `extractor_modules:`, "
                            "docs/extending.md)")
    return r


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
    return feature_paths(vid, src["from"], src["layout"], visual_kind(ds), registry.AUDIO, src["prefix"])


def discover_features(ds):
    """Accepted (every feature file present) and missing annotated videos of a features-only dataset;
    one directory listing per feature folder, so 10k videos cost milliseconds."""
    from models.data.features import find_features
    from models.run.pipeline import read_annotations

    src = features_source(ds)
    ann = read_annotations(DATASETS[ds]["annotations"], recipe(ds))
    if not Path(src["from"]).is_dir() or (src["layout"] == "ours" and not Path(src["from"], "features").is_dir()):
        raise WorkflowError(f"dataset {ds!r}: feature folder {src['from']} (layout {src['layout']}) not found")
    found, missing = find_features(sorted(ann), src["from"], src["layout"], visual_kind(ds), registry.AUDIO,
                                   src["prefix"])
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
                                   cache=Path("results") / ds / "probe_cache.json", cluster_names=CLUSTER_NAMES)
        discovery.write_rejections(found.rejected, Path("logs") / ds / "rejected_videos.tsv")
        if found.rejected and workflow.is_main_process:  # not again in every job's own snakemake process
            print(discovery.rejection_summary(ds, found.rejected, Path("logs") / ds / "rejected_videos.tsv"),
                  file=sys.stderr)
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
    return [visual_kind(ds), registry.AUDIO]


def training_datasets():
    return [ds for ds, spec in DATASETS.items() if spec.get("models")]


def prediction_datasets():
    return [ds for ds, spec in DATASETS.items() if "predict_with" in spec]


def feature_files(ds):
    if features_source(ds) is not None:
        return [str(p) for vid in videos(ds) for p in source_feature_paths(ds, vid)]
    return [f"results/{ds}/features/{kind}/{vid}.npy" for vid in videos(ds) for kind in feature_kinds(ds)]


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
        targets += expand("results/{ds}/models/{model}/metrics.html", ds=ds, model=dataset_models(ds))
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
        targets += [f"results/avvp/{name}/{mode}/metrics.html" for mode in avvp_modes(name)]
    for ds in reproduce_datasets():  # workflow/rules/reproduce.smk
        targets += [f"results/{ds}/reproduce.md", f"results/{ds}/reproduce.csv"]
    return targets


# ==================== weights.smk: the helpers of its rules ====================


WEIGHT_FILES = {spec.filename: name for name, spec in REGISTRY.items()}


@functools.cache
def weight_files(ds, kind):
    return [f"{WEIGHTS_ROOT}/{REGISTRY[name].filename}" for name in registry.weights_needed(recipe(ds), kind)]


# ==================== features.smk: the helpers of its rules ====================


KEEP_FLOW = config.get("keep_flow", False)
# one features_<name> rule per extractor that reads frames (features.smk); the user's files reach the jobs
VISUAL_EXTRACTORS = registry.visual_names()
EXTRACTOR_MODULE_ARGS = " ".join(f"--extractor-module {shlex.quote(str(p))}" for p in EXTRACTOR_MODULES)


def datasets_with_visual(kind):
    """Wildcard constraint: the datasets whose recipe uses ``kind`` (a regex matching nothing if none),
    so features/vggish/<vid>.npy has exactly one producing rule per dataset. A dataset whose features
    already exist (``features: {from: ...}``) has none: nothing may try to extract them."""
    names = [ds for ds in DATASETS if visual_kind(ds) == kind and "features" not in DATASETS[ds]]
    return "|".join(re.escape(ds) for ds in names) if names else "(?!)"


def feature_weights(wc):
    return [f for kind in feature_kinds(wc.ds) for f in weight_files(wc.ds, kind)]


def feature_outputs(name):
    """A features_<name> rule's outputs: the visual and audio features with their provenance, and the flow
    store where the extractor uses flow and keep_flow asks for it."""
    out = {"visual": f"results/{{ds}}/features/{name}/{{vid}}.npy",
           "visual_provenance": f"results/{{ds}}/features/{name}/{{vid}}.json",
           "audio": f"results/{{ds}}/features/{registry.AUDIO}/{{vid}}.npy",
           "audio_provenance": f"results/{{ds}}/features/{registry.AUDIO}/{{vid}}.json"}
    if KEEP_FLOW and registry.get(name).uses_flow:
        out |= {"flow": "results/{ds}/flow/{vid}.npz", "flow_provenance": "results/{ds}/flow/{vid}.npz.json"}
    return out


def extra_feature_args(wildcards, output):
    """``--flow-out`` where the rule keeps the flow, and the user's extractor files. One param under its old
    name (flow_out) and an unchanged shell command, so results made before the generic rule do not rerun
    (Snakemake's params and code triggers)."""
    flow = f"--flow-out {shlex.quote(output.flow)}" if "flow" in output.keys() else ""
    return " ".join(a for a in (flow, EXTRACTOR_MODULE_ARGS) if a)


# ==================== dataset.smk: the helpers of its rules ====================


def store_source(ds):
    """(root, layout, prefix) the store reads each video's features from."""
    src = features_source(ds)
    if src is None:
        return f"results/{ds}", "ours", ""
    return src["from"], src["layout"], src["prefix"]


# ==================== models.smk: the helpers of its rules ====================


def dataset_models(ds):
    """The configured models of `ds` followed by their label-shuffled controls."""
    spec = DATASETS[ds]
    return list(spec.get("models", [])) + [run_name(m, control=True) for m in spec.get("controls", [])]


def train_spec(ds, model):
    """The train fields of ``model``'s job as JSON (a param); a ``_seed<k>`` run (reproduce.smk, the grammar
    of models.run.names) trains with seed k."""
    base, _ = split_control(model)
    seed = split_seed(model)[1]
    spec = dict(DATASETS[ds].get("train", {}))
    if seed is not None:
        spec["seed"] = seed
    spec["model_overrides"] = DATASETS[ds].get("model_overrides", {}).get(base, {})
    return json.dumps(spec, sort_keys=True)


def predictor(ds):
    spec = DATASETS[ds]["predict_with"]
    return f"results/{spec['dataset']}/models/{spec['model']}/best.pt"


# ==================== avvp.smk: the helpers of its rules ====================


def check_avvp_sources(avvp):
    """Each split of a benchmark has exactly one source; a second one would make two rules write it."""
    for name, spec in avvp.items():
        sources = {"dense": [k for k in ("planted", "dense", "dense_from") if spec.get(k)],
                   "train/test": [k for k in ("planted", "llp", "train") if spec.get(k)]}
        for split, given in sources.items():
            if len(given) > 1:
                raise WorkflowError(f"avvp.{name}: {split} data from both {' and '.join(given)}; keep one")


check_avvp_sources(config.get("avvp", {}))


def avvp_spec(name):
    return config["avvp"][name]


def avvp_selects_on_val(name):
    """Stage 3 picks its epoch on the validation split (EARConfig.select, default best_val)."""
    return avvp_spec(name).get("ear", {}).get("select", "best_val") == "best_val"


def avvp_has_val(name):
    spec = avvp_spec(name)
    return bool(spec.get("planted") or "llp" in spec or spec.get("val"))


def avvp_data(name, split):
    """The .npz of `split` (dense, train, val, test) for benchmark `name`."""
    spec = avvp_spec(name)
    if split == "val" and not avvp_has_val(name):
        raise WorkflowError(f"avvp.{name}: stage 3 selects its epoch on a validation split, and none is configured "
                            "(give `val: <.npz>` with gt_a/gt_v, or `ear: {{select: last}}`)")
    if spec.get("planted") or (split != "dense" and "llp" in spec) or (split == "dense" and "dense_from" in spec):
        return f"data/avvp/{name}/{split}.npz"
    if split not in spec:
        raise WorkflowError(f"avvp.{name}: no `{split}` .npz configured (give planted: true, llp:, or the path)")
    return spec[split]


def avvp_modes(name):
    return avvp_spec(name).get("modes", ["pseudo", "video"])


def avvp_json(name, key):
    return shlex.quote(json.dumps(avvp_spec(name).get(key, {}), sort_keys=True))


def avvp_preset(name):
    return "--preset planted" if avvp_spec(name).get("planted") else ""


def avvp_banner(name):
    """Warning stamped on plots and the summary: planted data, or features from random weights."""
    spec = avvp_spec(name)
    if spec.get("planted"):
        return "PLANTED BENCHMARK: synthetic features, not LLP"
    if spec.get("llp", {}).get("weights", "pretrained") == "random":
        return "WEIGHTS: RANDOM - features from randomly initialised extractors"
    return ""


def stage2_eval_inputs(wc):
    """The splits with segment ground truth whose pseudo-labels stage 2 scores (Table III)."""
    files = {"test": avvp_data(wc.name, "test")}
    if avvp_has_val(wc.name):
        files["val"] = avvp_data(wc.name, "val")
    return files


def stage3_inputs(wc):
    files = {"train": avvp_data(wc.name, "train"), "test": avvp_data(wc.name, "test")}
    if avvp_selects_on_val(wc.name):
        files["val"] = avvp_data(wc.name, "val")
    if wc.mode != "video":
        labels = "shuffled" if wc.mode == "shuffled" else "real"
        files["pseudo"] = f"results/avvp/{wc.name}/stage2/{labels}/pseudo_labels.npz"
    return files


# ==================== llp.smk: the helpers of its rules ====================


LLP_NAMES = [n for n, s in config.get("avvp", {}).items() if "llp" in s]


DENSE_NAMES = [n for n, s in config.get("avvp", {}).items() if "dense_from" in s]


def llp_spec(name):
    """The `llp:` block; benchmarks without one (e.g. only `dense_from`) get the extractor defaults."""
    return config["avvp"][name].get("llp", {})


LLP_CSVS = {"train_csv": "AVVP_train.csv", "val_csv": "AVVP_val_pd.csv", "test_csv": "AVVP_test_pd.csv",
            "eval_audio_csv": "AVVP_eval_audio.csv", "eval_visual_csv": "AVVP_eval_visual.csv"}


def llp_source_dataset(name):
    """`from_dataset`: the UnAV-format `datasets` entry whose clips and annotations stand in for LLP."""
    ds = llp_spec(name).get("from_dataset")
    if ds is not None and (ds not in DATASETS or "annotations" not in DATASETS[ds]):
        raise WorkflowError(f"avvp.{name}.llp.from_dataset: {ds!r} is not a dataset with annotations in `datasets`")
    return ds


def llp_split_has_gt(name, split):
    """Whether a split's clips have segment ground truth: LLP's validation and test splits; the training
    split too where the CSVs come from a UnAV-format entry (`from_dataset`: every clip's events are known),
    so stage 2's pseudo-labels get their training row (real LLP has no segment labels for training)."""
    return split != "train" or bool(llp_source_dataset(name))


def llp_csv(name, key):
    if llp_source_dataset(name):
        return f"data/avvp/{name}/csv/{LLP_CSVS[key]}"
    spec = llp_spec(name)
    return str(Path(spec["annotations"]) / spec.get(key, LLP_CSVS[key]))


_LLP_FOUND = {}


def llp_videos(name):
    """{video_id: path} of the decodable clips; the others are logged with their reason. Probed once per
    Snakemake run (input functions call this for every job)."""
    ds = llp_source_dataset(name)
    if ds:
        return videos(ds)
    if name not in _LLP_FOUND:
        found = discovery.discover(Path(llp_spec(name)["videos"]), EXTENSIONS, min_duration_s=1.0,
                                   cache=Path("results") / "avvp" / name / "probe_cache.json",
                                   cluster_names=CLUSTER_NAMES)
        discovery.write_rejections(found.rejected, Path("logs") / "avvp" / name / "rejected_videos.tsv")
        _LLP_FOUND[name] = found.accepted
    return _LLP_FOUND[name]


_LLP_SPLITS = {}


def llp_split_videos(name, split):
    """The usable clips of one split, in CSV order. Memoised per Snakemake run: every llp_features job's
    input function reaches this, and re-reading the CSVs (or UnAV's JSON) per job made the DAG quadratic."""
    key = (name, split)
    if key not in _LLP_SPLITS:
        _LLP_SPLITS[key] = _read_llp_split(name, split)
    return _LLP_SPLITS[key]


def _read_llp_split(name, split):
    from models.data.llp import read_llp
    from models.data.unav import read_unav

    ds = llp_source_dataset(name)
    if ds:  # the CSVs are made by a job; the split is known from the annotations already
        clips = videos(ds)  # first: waits for the demo generator
        named = {"test": "test", "val": "validation"}  # the others are train (models.data.llp.unav_to_llp_csvs)
        ids = [v for v, a in read_unav(DATASETS[ds]["annotations"]).items()
               if a.subset == named.get(split) or (split == "train" and a.subset not in named.values())]
        return [v for v in ids if v in clips]
    ids = read_llp(llp_csv(name, f"{split}_csv"))
    clips = llp_videos(name)
    return [v for v in ids if v in clips]


def llp_splits(name):
    """The splits a benchmark reads: val only where stage 3 selects its epoch on it."""
    return ["train", "val", "test"] if avvp_selects_on_val(name) else ["train", "test"]


_LLP_CLIPS = {}


def llp_clips(name):
    """{id: path} of the clips of the split CSVs (other files in the folder are not extracted); memoised
    as llp_split_videos."""
    if name not in _LLP_CLIPS:
        clips = llp_videos(name)
        _LLP_CLIPS[name] = {v: clips[v] for split in llp_splits(name) for v in llp_split_videos(name, split)}
    return _LLP_CLIPS[name]


def llp_needs_generator(name):
    return any(m != "video" for m in avvp_modes(name))


def llp_kinds(name):
    from extractors.llp.extract import base_kinds

    spec = llp_spec(name)
    kinds = [*base_kinds(spec.get("visual", "resnet152_r21d")), *base_kinds(spec.get("audio", "vggish"))]
    if llp_needs_generator(name):
        kinds += ["clip", "clap"]
    return list(dict.fromkeys(kinds))


def llp_weight_files(name, text=False):
    from extractors.llp.extract import llp_weights_needed

    spec = llp_spec(name)
    kinds = (["clip", "clap"] if llp_needs_generator(name) else []) if text else llp_kinds(name)
    names = llp_weights_needed(kinds, spec.get("clip_model", "ViT-L-14"), spec.get("weights", "pretrained"), text=text)
    return [f"{WEIGHTS_ROOT}/{REGISTRY[n].filename}" for n in names]


def llp_common_args(name):
    spec = llp_spec(name)
    return (f"--weights {spec.get('weights', 'pretrained')} --weights-root {shlex.quote(WEIGHTS_ROOT)} "
            f"--clip-model {shlex.quote(spec.get('clip_model', 'ViT-L-14'))} --seed {avvp_spec(name).get('seed', 0)}")


def llp_feature_shell(bench_dir):
    """The per-clip job; the worker writes the job's own resources beside Snakemake's benchmark file."""
    return (
        f"python -m extractors.worker llp --threads {{threads}} --record {bench_dir}/{{wildcards.vid:q}}.worker.json "
        "--entry extractors.llp.extract -- "
        "clip --video={input.video:q} --out {output.features:q} --kinds {params.kinds} --max-seconds {params.seconds} "
        "{params.common} --device {params.device} > {log:q} 2>&1"
    )


def llp_split_features(wc):
    """The per-clip feature files of the split's clips (known once the clips are: may wait for the demo).
    The job reads them from their folder (--features-dir): LLP's 11,849 paths would not fit a command line."""
    wanted = llp_split_videos(wc.llp, wc.split)
    if not wanted:
        raise WorkflowError(f"avvp.{wc.llp}: no usable clip for the {wc.split} split (see "
                            f"logs/avvp/{wc.llp}/rejected_videos.tsv and {llp_csv(wc.llp, f'{wc.split}_csv')})")
    return [f"results/avvp/{wc.llp}/features/clips/{v}.npz" for v in wanted]


def dense_dataset(name):
    ds = avvp_spec(name)["dense_from"]
    if ds not in DATASETS or "annotations" not in DATASETS[ds]:
        raise WorkflowError(f"avvp.{name}.dense_from: {ds!r} is not a dataset with annotations in `datasets`")
    return ds


def dense_weight_files(name):
    from extractors.llp.extract import llp_weights_needed

    spec = llp_spec(name)
    names = llp_weights_needed(["clip", "clap"], spec.get("clip_model", "ViT-L-14"), spec.get("weights", "pretrained"))
    return [f"{WEIGHTS_ROOT}/{REGISTRY[n].filename}" for n in names]


# ==================== report.smk: the helpers of its rules ====================


def summary_inputs(wc):
    ds = wc.ds
    spec = DATASETS[ds]
    files = {"features": feature_files(ds)}
    if spec.get("models"):
        files["metrics"] = expand("results/{ds}/models/{model}/metrics.json", ds=ds, model=dataset_models(ds))
        files["compare"] = f"results/{ds}/compare.md"
        if spec.get("annotations"):  # the page says what the data is, read from this file
            files["annotations"] = spec["annotations"]
    if "predict_with" in spec:
        model = spec["predict_with"]["model"]
        files["predictions"] = [f"results/{ds}/predictions/{model}/{vid}.json" for vid in videos(ds)]
    return files


# ==================== reproduce.smk: the helpers of its rules ====================


PUBLISHED_FILE = Path(workflow.basedir) / "config" / "published.yaml"


PUBLISHED = yaml.safe_load(PUBLISHED_FILE.read_text())


def reproduce_spec(ds):
    """``reproduce: <table>`` or ``reproduce: {table: <table>, models: [...], seeds: [...], controls: bool}``
    (a subset of its models; one training per seed; the weak models' label-shuffled controls, default on)."""
    spec = DATASETS[ds]["reproduce"]
    defaults = {"models": None, "seeds": None, "controls": True}
    return {**defaults, "table": spec} if isinstance(spec, str) else {**defaults, **spec}


def reproduce_table(ds):
    name = reproduce_spec(ds)["table"]
    if name not in PUBLISHED["tables"]:
        raise WorkflowError(f"dataset {ds!r}: reproduce: {name!r} is not a table of {PUBLISHED_FILE} "
                            f"(tables: {sorted(PUBLISHED['tables'])})")
    want = PUBLISHED["tables"][name]["recipe"]
    if DATASETS[ds]["recipe"] != want:
        raise WorkflowError(f"dataset {ds!r}: table {name!r} was measured with recipe {want!r}, "
                            f"the dataset uses {DATASETS[ds]['recipe']!r}")
    return name


def reproduce_datasets(table=None):
    return [ds for ds, spec in DATASETS.items()
            if "reproduce" in spec and (table is None or reproduce_table(ds) == table)]


def reproduce_models(ds):
    """The table's models in row order, each once (only those listed in ``reproduce.models``, if given)."""
    rows = PUBLISHED["tables"][reproduce_table(ds)]["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows if r.get("model")))
    only = reproduce_spec(ds)["models"]
    if only is None:
        return models
    unknown = sorted(set(only) - set(models))
    if unknown:
        raise WorkflowError(f"dataset {ds!r}: reproduce.models {unknown} are not models of table "
                            f"{reproduce_table(ds)!r} ({models})")
    return [m for m in models if m in only]


# The table's training fields go under the dataset's own overrides (the dataset's win), before any job
# reads them (train_spec above), so the train rule's params, and hence reruns, see the merged values.
for _ds, _spec in DATASETS.items():
    if "reproduce" in _spec and reproduce_spec(_ds)["table"] in PUBLISHED["tables"]:
        _table_train = PUBLISHED["tables"][reproduce_spec(_ds)["table"]].get("train") or {}
        _own = _spec.setdefault("model_overrides", {})
        for _model, _fields in _table_train.items():
            _own[_model] = {**_fields, **_own.get(_model, {})}


def reproduce_seeds(ds):
    """The seeds each model is trained with: ``reproduce.seeds``, else the dataset's ``train.seed`` alone."""
    own = DATASETS[ds].get("train", {}).get("seed", 0)
    return list(reproduce_spec(ds)["seeds"] or [own])


def reproduce_run(ds, model, seed, control=False):
    """The model folder of one run: the dataset's own seed keeps the plain name (the files of a single-seed
    table, shared with `compare`), another seed is ``<model>[_shuffled]_seed<k>`` (models.run.names)."""
    own = seed == DATASETS[ds].get("train", {}).get("seed", 0)
    return run_name(model, control, None if own else seed)


def reproduce_runs(ds):
    """``{model: {"ours": {seed: run}, "control": {seed: run}}}``: every run of the table, one job each; the
    control (labels shuffled: the chance line) only for the models the table lists as weakly supervised."""
    rows = PUBLISHED["tables"][reproduce_table(ds)]["rows"]
    weak = {r["model"] for r in rows if r.get("model") and r["supervision"] == "weak"}
    spec, seeds = reproduce_spec(ds), reproduce_seeds(ds)
    runs = {}
    for m in reproduce_models(ds):
        runs[m] = {"ours": {s: reproduce_run(ds, m, s) for s in seeds}}
        if spec["controls"] and m in weak:
            runs[m]["control"] = {s: reproduce_run(ds, m, s, control=True) for s in seeds}
    return runs


def reproduce_run_names(ds, kind=None):
    return [r for groups in reproduce_runs(ds).values() for k, by_seed in groups.items()
            if kind in (None, k) for r in by_seed.values()]


@functools.cache
def has_label_ids(ds):
    from models.run.pipeline import read_annotations

    ann = read_annotations(DATASETS[ds]["annotations"], recipe(ds))
    return any(s.label_id is not None for a in ann.values() for s in a.segments)


def reproduce_inputs(wc):
    files = {"metrics": expand("results/{ds}/models/{model}/metrics.json", ds=wc.ds,
                               model=reproduce_run_names(wc.ds))}
    if has_label_ids(wc.ds):
        files["evaluator"] = expand("results/{ds}/models/{model}/unav_results.json", ds=wc.ds,
                                    model=reproduce_run_names(wc.ds, "ours"))
    return files


def reproduce_context(ds):
    src = features_source(ds)
    return json.dumps({
        "features": (f"{src['from']} (layout {src['layout']})" if src else f"extracted here ({videos_dir(ds)})"),
        "annotations": DATASETS[ds]["annotations"],
        "recipe": f"{recipe(ds).name} (fingerprint {recipe(ds).fingerprint()})",
        "annotated videos without features": f"{len(rejected(ds))} (logs/{ds}/"
                                             f"{'missing_features' if src else 'rejected_videos'}.tsv); "
                                             "their ground truth counts as missed",
        "published figures": "config/published.yaml",
    })


def _reproduce_target(table):
    def targets(wc):
        found = reproduce_datasets(table)
        if not found:
            raise WorkflowError(f"no dataset entry says `reproduce: {table}`; add one (config/config.yaml has a "
                                "commented example with `features: {from: ..., layout: unav_release}`)")
        return [f"results/{ds}/reproduce.md" for ds in found]

    return targets
