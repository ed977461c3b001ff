# The built-in demo dataset: synthetic audio-visual clips generated with ffmpeg, with known events and
# UnAV-100-style annotations. A checkpoint, because its videos are only known once it has run.

checkpoint demo_data:
    output:
        videos=directory("data/{ds}/videos"),
        annotations="data/{ds}/annotations.json",
    params:
        spec=lambda wc: json.dumps(DATASETS[wc.ds]["generate_demo"], sort_keys=True),
    log:
        "logs/{ds}/demo_data.log",
    benchmark:
        "benchmarks/{ds}/demo_data.tsv"
    conda:
        "../../envs/media.yaml"
    shell:
        "python -m extractors.synthetic_videos --out-dir data/{wildcards.ds:q} --spec {params.spec:q} > {log:q} 2>&1"
