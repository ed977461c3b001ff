# The input functions of the rule files, one section per rule file, and the config objects they ask (the
# snakemake-workflows layout: rule files hold rules, common.smk input functions). The logic behind them lives
# in Python modules with tests: models.run.workflow_config (datasets: recipes, video discovery, features,
# models, reproduce tables) and models.avvp.workflow_config (avvp: benchmarks, LLP splits and clips).
# Included first by the Snakefile, so every rule file can use any name defined here.

import json
import re

from snakemake.exceptions import WorkflowError

from extractors import registry
from extractors.weight_registry import REGISTRY
from models.avvp.workflow_config import LLP_CSVS, LLP_SECONDS, Benchmarks, llp_feature_shell, shuffle_flag
from models.run import slurm_status
from models.run.code_fingerprint import code_fingerprint
from models.run.workflow_config import Project, metrics_files, metrics_pages

# snakemake-executor-plugin-slurm reads sacct's `CANCELLED by <uid>` as a running job (Snakemake then waits
# for ever after `scancel`): read the state word instead (models/run/slurm_status.py, docs/cluster.md)
slurm_status.install()

# The config as the rules read it, memoised for this invocation; discovery waits for the demo generator (a
# checkpoint) and prints its rejection summary in the main process only (not again in every job's own one).
project = Project(config, workflow.basedir, wait_for_demo=lambda ds: checkpoints.demo_data.get(ds=ds),
                  is_main_process=workflow.is_main_process)
benchmarks = Benchmarks(config, project)

wildcard_constraints:
    ds="[A-Za-z0-9_-]+",
    model="[A-Za-z0-9_-]+",
    vid="[^/]+",
    kind="|".join(registry.EXTRACTORS),


DATASETS = project.datasets
WEIGHTS_ROOT = project.weights_root
DEVICE = config.get("device", "auto")


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


def source_video(wildcards):
    return str(project.videos(wildcards.ds)[wildcards.vid])


def all_targets(wildcards):
    targets = []
    for ds in project.training_datasets():
        targets += metrics_files(ds, DATASETS[ds]["models"])
        targets += metrics_pages(ds, project.dataset_models(ds))
        targets.append(f"results/{ds}/compare.md")
        targets.append(f"results/{ds}/summary.html")
        targets += project.record_files(ds)
    for ds in project.prediction_datasets():
        model = DATASETS[ds]["predict_with"]["model"]
        targets += [f"results/{ds}/predictions/{model}/{vid}.json" for vid in project.videos(ds)]
        targets.append(f"results/{ds}/summary.html")
        targets += project.record_files(ds)
    for name in benchmarks.avvp:
        targets.append(f"results/avvp/{name}/summary.html")
        targets += benchmarks.metrics_pages(name)
    for ds in project.reproduce_datasets():  # workflow/rules/reproduce.smk
        targets += [f"results/{ds}/reproduce.md", f"results/{ds}/reproduce.csv"]
    return targets


# ==================== weights.smk ====================


WEIGHT_FILES = {spec.filename: name for name, spec in REGISTRY.items()}


# ==================== features.smk ====================


def feature_weights(wc):
    return [f for kind in project.feature_kinds(wc.ds) for f in project.weight_files(wc.ds, kind)]


def extra_feature_args(wildcards, output):
    """``--flow-out`` where the rule keeps the flow, and the user's extractor files. One param under its old
    name (flow_out) and an unchanged shell command, so results made before the generic rule do not rerun
    (Snakemake's params and code triggers)."""
    return project.extra_feature_args(output.flow if "flow" in output.keys() else None)


# ==================== report.smk ====================


def summary_inputs(wc):
    ds, spec = wc.ds, DATASETS[wc.ds]
    files = {"features": project.feature_files(ds)}
    if spec.get("models"):
        files["metrics"] = metrics_files(ds, project.dataset_models(ds))
        files["compare"] = f"results/{ds}/compare.md"
        if spec.get("annotations"):  # the page says what the data is, read from this file
            files["annotations"] = spec["annotations"]
    if "predict_with" in spec:
        model = spec["predict_with"]["model"]
        files["predictions"] = [f"results/{ds}/predictions/{model}/{vid}.json" for vid in project.videos(ds)]
    return files


# ==================== avvp.smk ====================


def stage2_eval_inputs(wc):
    return benchmarks.stage2_eval_inputs(wc.name)


def stage3_inputs(wc):
    return benchmarks.stage3_inputs(wc.name, wc.mode)


def stage3_arg(key):
    """The param function of one of stage 3's optional arguments (models.avvp.workflow_config.stage3_args)."""
    return lambda wc: benchmarks.stage3_args(wc.name, wc.mode)[key]


# ==================== reproduce.smk ====================


def reproduce_inputs(wc):
    files = {"metrics": metrics_files(wc.ds, project.reproduce_run_names(wc.ds))}
    if project.has_label_ids(wc.ds):
        files["evaluator"] = [f"results/{wc.ds}/models/{m}/unav_results.json"
                              for m in project.reproduce_run_names(wc.ds, "ours")]
    return files


def reproduce_target(table):
    def targets(wc):
        found = project.reproduce_datasets(table)
        if not found:
            raise WorkflowError(f"no dataset entry says `reproduce: {table}`; add one (config/config.yaml has a "
                                "commented example with `features: {from: ..., layout: unav_release}`)")
        return [f"results/{ds}/reproduce.md" for ds in found]

    return targets
