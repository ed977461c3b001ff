# EAR for weakly supervised audio-visual video parsing (LLP), one rule per stage (models/avvp/train.py):
#   ear_stage1  label migration + pseudo-label generator pre-training on dense AV data
#   ear_stage2  the frozen generator labels the LLP training split (real labels, or shuffled: the control), and
#               the validation/test splits, whose pseudo-labels are scored (the paper's Table III)
#   ear_stage3  the AVVP model (AMDF + ERM) trained with pseudo-labels ("pseudo"), video-level labels only
#               ("video") or shuffled labels ("shuffled"), scored on the validation split every epoch; the
#               best epoch (segment-level Type@AV, as HAN/VALOR) is evaluated on the test split
#   avvp_summary  one HTML page per benchmark: metrics of every mode, pseudo-label quality, curves, parses
# Data per benchmark (config `avvp:`): `planted: true` writes the planted benchmark (avvp_planted); otherwise
# `dense`, `train`, `val`, `test` are .npz files (layout in models/avvp/train.py), or `llp:` assembles
# train/val/test from raw LLP clips (workflow/rules/llp.smk). Without a validation split, stage 3 needs
# `ear: {select: last}` (keep the last epoch).

rule avvp_planted:
    output:
        dense="data/avvp/{name}/dense.npz",
        train="data/avvp/{name}/train.npz",
        val="data/avvp/{name}/val.npz",
        test="data/avvp/{name}/test.npz",
    wildcard_constraints:
        name="|".join(benchmarks.planted_names) or "^$",
    params:
        seed=lambda wc: benchmarks.seed(wc.name),
    log:
        "logs/avvp/{name}/planted.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.train planted --seed {params.seed} --out-dir data/avvp/{wildcards.name:q} > {log:q} 2>&1"


rule ear_stage1:
    input:
        dense=lambda wc: benchmarks.data(wc.name, "dense"),
    output:
        generator="results/avvp/{name}/stage1/generator.pt",
        log_json="results/avvp/{name}/stage1/generator.json",
    params:
        gen=lambda wc: benchmarks.section_json(wc.name, "gen"),
        preset=lambda wc: benchmarks.preset(wc.name),
        migration=lambda wc: benchmarks.migration_flag(wc.name),
        seed=lambda wc: benchmarks.seed(wc.name),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/avvp/{name}/stage1.log",
    benchmark:
        "benchmarks/avvp/{name}/stage1.tsv"
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.train stage1 --dense {input.dense:q} --out {output.generator:q} {params.preset} "
        "{params.migration} --gen {params.gen} --seed {params.seed} > {log:q} 2>&1"


rule ear_stage2:
    input:
        unpack(stage2_eval_inputs),
        generator="results/avvp/{name}/stage1/generator.pt",
        train=lambda wc: benchmarks.data(wc.name, "train"),
    output:
        labels="results/avvp/{name}/stage2/{labels}/pseudo_labels.npz",
        scores="results/avvp/{name}/stage2/{labels}/pseudo_labels.json",
    wildcard_constraints:
        labels="real|shuffled",
    params:
        shuffle=lambda wc: shuffle_flag(wc.labels),
        seed=lambda wc: benchmarks.seed(wc.name),
        evals=lambda wc: benchmarks.stage2_eval_args(wc.name),
    log:
        "logs/avvp/{name}/stage2_{labels}.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.train stage2 --generator {input.generator:q} --train {input.train:q} {params.evals} "
        "--out {output.labels:q} {params.shuffle} --seed {params.seed} > {log:q} 2>&1"


rule ear_stage3:
    input:
        unpack(stage3_inputs),
    output:
        metrics="results/avvp/{name}/{mode}/metrics.json",  # in the report as metrics.html (report.smk)
        predictions="results/avvp/{name}/{mode}/predictions.json",
        model="results/avvp/{name}/{mode}/ear.pt",
        curve="results/avvp/{name}/{mode}/curve.png",
    wildcard_constraints:
        mode="pseudo|video|shuffled",
    params:
        pseudo=stage3_arg("pseudo"),
        val=stage3_arg("val"),
        shuffle=lambda wc: shuffle_flag(wc.mode),
        ear=lambda wc: benchmarks.section_json(wc.name, "ear"),
        preset=lambda wc: benchmarks.preset(wc.name),
        banner=stage3_arg("banner"),
        seed=lambda wc: benchmarks.seed(wc.name),
        out=stage3_arg("out"),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/avvp/{name}/stage3_{mode}.log",
    benchmark:
        "benchmarks/avvp/{name}/stage3_{mode}.tsv"
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.train stage3 --train {input.train:q} {params.val} --test {input.test:q} {params.pseudo} "
        "{params.shuffle} --out {params.out} --ear {params.ear} {params.preset} {params.banner} "
        "--seed {params.seed} > {log:q} 2>&1"


rule avvp_summary:
    input:
        metrics=lambda wc: benchmarks.summary_metrics(wc.name),
        stage1=lambda wc: benchmarks.stage1_log(wc.name),
        train=lambda wc: benchmarks.data(wc.name, "train"),  # which test classes no training video carries
        test=lambda wc: benchmarks.data(wc.name, "test"),
        # the training split's pseudo-labels: what a Table III row with seg > 0 and evt 0.0 is made of
        pseudo=lambda wc: benchmarks.train_pseudo_labels(wc.name),
    output:
        html=report("results/avvp/{name}/summary.html", caption="../report/avvp.rst", category="AVVP (EAR)",
                    labels={"benchmark": "{name}", "labels": "summary"}),
    params:
        banner=lambda wc: benchmarks.banner(wc.name),
    log:
        "logs/avvp/{name}/summary.log",
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/avvp_summary.py"
