# Pretrained checkpoints from the registry (extractors/weight_registry.py), SHA-256 verified. Feature jobs list
# the checkpoints their recipe needs as inputs, so a first run fetches them; offline the fetch fails with
# a message naming the file, its official URL and where to put it. Random-weight recipes (the demo) need
# none.

rule fetch_weights:
    output:
        f"{WEIGHTS_ROOT}/{{filename}}",
    wildcard_constraints:
        filename="|".join(re.escape(f) for f in WEIGHT_FILES),
    params:
        name=lambda wc: WEIGHT_FILES[wc.filename],
        root=untracked(WEIGHTS_ROOT),  # no rerun trigger (common.smk: untracked); the file is the output
    log:
        "logs/weights/{filename}.log",
    benchmark:
        "benchmarks/weights/{filename}.tsv"
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m extractors.weights fetch {params.name:q} --root {params.root:q} > {log:q} 2>&1"


rule fetch_all_weights:
    input:
        lambda wc: project.all_weight_files(),
