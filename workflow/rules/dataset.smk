# All features of a dataset in one memory-mapped fp16 store (audio and visual cut to the same T), the
# input of every training / evaluation job. Reruns when the set of videos changes. The features come from
# this run's features/ folder, or, for a dataset with `features: {from, layout, prefix}`, straight from that
# folder (the public UnAV-100 release: flat <vid>_rgb/_flow/_vggish.npy, float64 I3D; or another run's
# results/<ds>), with no video and no extraction job.

rule feature_store:
    input:
        features=lambda wc: project.feature_files(wc.ds),
    output:
        store=directory("results/{ds}/store"),
    params:
        visual=lambda wc: project.visual_kind(wc.ds),
        videos=lambda wc: sorted(project.videos(wc.ds)),
        source=lambda wc: project.store_source(wc.ds),
        missing=lambda wc: project.missing_features(wc.ds),
    log:
        "logs/{ds}/feature_store.log",
    benchmark:
        "benchmarks/{ds}/feature_store.tsv"
    conda:
        "../../envs/avloc.yaml"
    script:
        "../scripts/feature_store.py"
