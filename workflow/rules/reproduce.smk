# One target per published table: `snakemake reproduce_unav100` (or reproduce_activitynet) trains and
# evaluates, on the dataset entry that says `reproduce: unav100`, every model of that table that has an
# implementation here (config/published.yaml, `model:`), through the ordinary train / evaluate rules, and
# writes results/<ds>/reproduce.md / .csv: each published row with our row beneath (mean ± std over
# `reproduce.seeds`, one train/evaluate job per seed, each seed's row in the CSV), the label-shuffled control
# of each weak model beneath it as the chance line (`controls: false` leaves them out), and the seed and
# recipe of every run. The table's `train:` fields (e.g. CLASP's M = 16, batch 8 on ActivityNet) are merged under
# the dataset's own model_overrides. For annotation files with label_id, each model's predictions are also
# converted to the UnAV evaluator's input (models.run.interchange): results/<ds>/models/<model>/unav_results.json.

rule reproduce:
    input:
        unpack(reproduce_inputs),
    output:
        markdown="results/{ds}/reproduce.md",
        csv=report("results/{ds}/reproduce.csv", caption="../report/compare.rst", category="Metrics",
                   labels={"dataset": "{ds}", "table": "reproduction"}),
    params:
        name=lambda wc: project.reproduce_table(wc.ds),
        table=lambda wc: project.reproduce_table_json(wc.ds),
        papers=json.dumps(project.published["papers"]),
        train_specs=lambda wc: project.reproduce_train_specs(wc.ds),
        runs=lambda wc: json.dumps(project.reproduce_runs(wc.ds)),
        context=lambda wc: project.reproduce_context(wc.ds),
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


for _table in project.published["tables"]:

    rule:
        name:
            f"reproduce_{_table}"
        input:
            reproduce_target(_table),
