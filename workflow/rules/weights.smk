# Pretrained checkpoints from the registry (extractors/weights.py), SHA-256 verified. Offline this fails
# with a message naming the file, its official URL and where to put it. The demo never needs it.


rule fetch_weights:
    output:
        f"{WEIGHTS_ROOT}/{{name}}",
    log:
        "logs/weights/{name}.log",
    benchmark:
        "benchmarks/weights/{name}.tsv"
    conda:
        "../../envs/extract.yaml"
    shell:
        "python -m extractors.weights fetch-file {wildcards.name:q} --root {WEIGHTS_ROOT:q} > {log:q} 2>&1"
