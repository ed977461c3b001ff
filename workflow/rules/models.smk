# Train / evaluate every configured localizer through the one training and evaluation entry
# (models.run.train, models.run.evaluate), compare them in one table, and predict timelines for new videos.
# `controls: [clasp]` adds a label-shuffled control of each listed model (job name `clasp_shuffled`: same
# data, recipe, overrides and seed, training labels permuted across videos) to the table and the summary.
# Each train/evaluate/predict job's params carry a hash of the source files its model depends on
# (models.run.code_fingerprint: the localizer's modules + the shared data/training/evaluation code), so
# editing one localizer reruns that model's jobs and nothing else.

rule train:
    input:
        store="results/{ds}/store",
        annotations=lambda wc: DATASETS[wc.ds]["annotations"],
    output:
        checkpoint="results/{ds}/models/{model}/best.pt",
        log_jsonl="results/{ds}/models/{model}/log.jsonl",
        curve=report(
            "results/{ds}/models/{model}/curve.png",
            caption="../report/training_curve.rst",
            category="Training curves",
            labels={"dataset": "{ds}", "model": "{model}"},
        ),
    params:
        recipe=lambda wc: project.recipe_json(wc.ds),
        train=lambda wc: project.train_spec(wc.ds, wc.model),
        code=lambda wc: code_fingerprint(wc.model, "train", workflow.basedir),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/{ds}/train/{model}.log",
    benchmark:
        "benchmarks/{ds}/train/{model}.tsv"
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/train.py"


rule evaluate:
    input:
        store="results/{ds}/store",
        annotations=lambda wc: DATASETS[wc.ds]["annotations"],
        checkpoint="results/{ds}/models/{model}/best.pt",
    output:
        metrics="results/{ds}/models/{model}/metrics.json",  # in the report as metrics.html (report.smk)
        predictions="results/{ds}/models/{model}/predictions.json",
        timelines=report(
            directory("results/{ds}/models/{model}/timelines"),
            patterns=["{name}.png"],
            caption="../report/timeline.rst",
            category="Timelines (test split)",
            labels={"dataset": "{ds}", "model": "{model}", "video": "{name}"},
        ),
    params:
        recipe=lambda wc: project.recipe_json(wc.ds),
        code=lambda wc: code_fingerprint(wc.model, "evaluate", workflow.basedir),
        max_timelines=lambda wc: project.max_timelines(wc.ds),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/{ds}/evaluate/{model}.log",
    benchmark:
        "benchmarks/{ds}/evaluate/{model}.tsv"
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/evaluate.py"


rule compare:
    input:
        metrics=lambda wc: metrics_files(wc.ds, project.dataset_models(wc.ds)),
    output:
        markdown="results/{ds}/compare.md",
        csv="results/{ds}/compare.csv",
        html=report("results/{ds}/compare.html", caption="../report/compare.rst", category="Metrics",
                    labels={"run": "{ds}: all models"}),
    log:
        "logs/{ds}/compare.log",
    benchmark:
        "benchmarks/{ds}/compare.tsv"
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/compare.py"


rule predict:
    input:
        features=lambda wc: project.predict_features(wc.ds, wc.vid),
        checkpoint=lambda wc: project.predictor(wc.ds),
        manifest="results/{ds}/media/{vid}.json",
        annotations=lambda wc: project.predict_annotations(wc.ds),
    output:
        events="results/{ds}/predictions/{model}/{vid}.json",
        csv="results/{ds}/predictions/{model}/{vid}.csv",
        timeline=report(
            "results/{ds}/predictions/{model}/{vid}.png",
            caption="../report/prediction.rst",
            category="Predictions (new videos)",
            labels={"dataset": "{ds}", "model": "{model}", "video": "{vid}"},
        ),
    params:
        recipe=lambda wc: project.recipe_json(wc.ds),
        code=lambda wc: code_fingerprint(wc.model, "predict", workflow.basedir),
    log:
        "logs/{ds}/predict/{model}/{vid}.log",
    benchmark:
        "benchmarks/{ds}/predict/{model}/{vid}.tsv"
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/predict.py"
