# All features of a dataset in one memory-mapped fp16 store (audio and visual cut to the same T), the
# input of every training / evaluation job. Reruns when the set of videos changes.


rule feature_store:
    input:
        features=lambda wc: feature_files(wc.ds),
    output:
        store=directory("results/{ds}/store"),
    params:
        visual=lambda wc: visual_kind(wc.ds),
        videos=lambda wc: sorted(videos(wc.ds)),
    log:
        "logs/{ds}/feature_store.log",
    benchmark:
        "benchmarks/{ds}/feature_store.tsv"
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/feature_store.py"
