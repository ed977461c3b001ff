# EAR for weakly supervised audio-visual video parsing (LLP): stage 1 (label migration + generator
# pre-training on dense AV data), stage 2 (pseudo-labels on LLP), stage 3 (AMDF + ERM model) and the
# AVVP evaluation, run by models.ear_train. `planted: true` uses the planted LLP-style benchmark (no input
# files); otherwise `dense`, `train`, `test` point at .npz feature files (see models/ear_train.py).


def avvp_args(name):
    spec = config.get("avvp", {})[name]
    if spec.get("planted"):
        return "--demo"
    return " ".join(f"--{k} {shlex.quote(spec[k])}" for k in ("dense", "train", "test") if k in spec)


def avvp_inputs(wc):
    spec = config.get("avvp", {})[wc.name]
    return [spec[k] for k in ("dense", "train", "test") if k in spec]


rule ear:
    input:
        avvp_inputs,
    output:
        metrics=report("results/avvp/{name}/{mode}/metrics.json", caption="../report/avvp.rst",
                       category="AVVP (EAR)", labels={"benchmark": "{name}", "labels": "{mode}"}),
        predictions="results/avvp/{name}/{mode}/predictions.json",
    wildcard_constraints:
        mode="pseudo|video",
    params:
        args=lambda wc: avvp_args(wc.name),
        seed=lambda wc: config["avvp"][wc.name].get("seed", 0),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/avvp/{name}/{mode}.log",
    benchmark:
        "benchmarks/avvp/{name}/{mode}.tsv"
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m models.ear_train {params.args} --mode {wildcards.mode} --seed {params.seed} "
        "--out results/avvp/{wildcards.name:q}/{wildcards.mode} > {log:q} 2>&1"
