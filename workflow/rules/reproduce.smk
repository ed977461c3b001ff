# One target per published table: `snakemake reproduce_unav100` (or reproduce_activitynet) trains and
# evaluates, on the dataset entry that says `reproduce: unav100`, every model of that table that has an
# implementation here (config/published.yaml, `model:`), through the ordinary train / evaluate rules, and
# writes results/<ds>/reproduce.md / .csv: each published row with our row beneath (mean ± std over
# `reproduce.seeds`, one train/evaluate job per seed, each seed's row in the CSV), the label-shuffled control
# of each weak model beneath it as the chance line (`controls: false` leaves them out), and the seed and
# recipe of every run. The table's `train:` fields (e.g. CLASP's M = 16, batch 8 on ActivityNet) are merged under
# the dataset's own model_overrides. For annotation files with label_id, each model's predictions are also
# converted to the UnAV evaluator's input (models.run.interchange): results/<ds>/models/<model>/unav_results.json.

import yaml

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
# reads them (models.smk train_spec), so the train rule's params, and hence reruns, see the merged values.
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


def run_name(ds, model, seed, control=False):
    """The model folder of one run: the dataset's own seed keeps the plain name (the files of a single-seed
    table, shared with `compare`), another seed is ``<model>[_shuffled]_seed<k>`` (models.run.pipeline)."""
    name = f"{model}_shuffled" if control else model
    return name if seed == DATASETS[ds].get("train", {}).get("seed", 0) else f"{name}_seed{seed}"


def reproduce_runs(ds):
    """``{model: {"ours": {seed: run}, "control": {seed: run}}}``: every run of the table, one job each; the
    control (labels shuffled: the chance line) only for the models the table lists as weakly supervised."""
    rows = PUBLISHED["tables"][reproduce_table(ds)]["rows"]
    weak = {r["model"] for r in rows if r.get("model") and r["supervision"] == "weak"}
    spec, seeds = reproduce_spec(ds), reproduce_seeds(ds)
    runs = {}
    for m in reproduce_models(ds):
        runs[m] = {"ours": {s: run_name(ds, m, s) for s in seeds}}
        if spec["controls"] and m in weak:
            runs[m]["control"] = {s: run_name(ds, m, s, control=True) for s in seeds}
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


rule reproduce:
    input:
        unpack(reproduce_inputs),
    output:
        markdown="results/{ds}/reproduce.md",
        csv=report("results/{ds}/reproduce.csv", caption="../report/compare.rst", category="Metrics",
                   labels={"dataset": "{ds}", "table": "reproduction"}),
    params:
        name=lambda wc: reproduce_table(wc.ds),
        table=lambda wc: json.dumps(PUBLISHED["tables"][reproduce_table(wc.ds)]),
        papers=json.dumps(PUBLISHED["papers"]),
        train_specs=lambda wc: json.dumps({r: json.loads(train_spec(wc.ds, r)) for r in reproduce_run_names(wc.ds)}),
        runs=lambda wc: json.dumps(reproduce_runs(wc.ds)),
        context=lambda wc: reproduce_context(wc.ds),
    log:
        "logs/{ds}/reproduce.log",
    benchmark:
        "benchmarks/{ds}/reproduce.tsv"
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/reproduce.py"


rule unav_results:
    input:
        predictions="results/{ds}/models/{model}/predictions.json",
        annotations=lambda wc: DATASETS[wc.ds]["annotations"],
    output:
        "results/{ds}/models/{model}/unav_results.json",
    log:
        "logs/{ds}/unav_results/{model}.log",
    benchmark:
        "benchmarks/{ds}/unav_results/{model}.tsv"
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.run.interchange --predictions {input.predictions:q} --annotations {input.annotations:q} "
        "--out {output:q} > {log:q} 2>&1"


def _reproduce_target(table):
    def targets(wc):
        found = reproduce_datasets(table)
        if not found:
            raise WorkflowError(f"no dataset entry says `reproduce: {table}`; add one (config/config.yaml has a "
                                "commented example with `features: {from: ..., layout: unav_release}`)")
        return [f"results/{ds}/reproduce.md" for ds in found]

    return targets


for _table in PUBLISHED["tables"]:

    rule:
        name:
            f"reproduce_{_table}"
        input:
            _reproduce_target(_table),
