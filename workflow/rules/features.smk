# Per-video features: one job per video computes the visual stream (RAFT flow + two-stream I3D, R(2+1)D-34
# for ActivityNet, or a user's extractor) and VGGish from the media stage's mp4/wav. One job rather than one per
# stage: the frames are decoded once for flow and RGB, flow never round-trips through the disk
# (kept only with keep_flow), and the DAG has two jobs per video (media, features), so it stays small
# at 10k-20k videos. Jobs run on resident workers (extractors/worker/): the networks are built once
# per worker, not per video. The recipe (minus training-only fields) is a param, so a recipe edit
# reruns exactly these jobs. A video whose media job recorded a failure, or whose content fails here
# (ContentError), gets a failure record as its outputs (`failed`, `stage` in each .json, empty .npy) and the
# job succeeds; the store leaves it out (extractors/extract.py, features_job).

FEATURE_SHELL = (
    "python -m extractors.worker features --threads {threads} "
    "--record benchmarks/{wildcards.ds:q}/features/{wildcards.vid:q}.worker.json -- features --visual {params.visual} "
    "--mp4 {input.mp4:q} --wav {input.wav:q} --out-visual {output.visual:q} --out-audio {output.audio:q} "
    "{params.flow_out} --recipe-json {params.recipe:q} --device {params.device} --weights-root {params.weights_root:q} "
    "> {log:q} 2>&1"
)


# One rule per visual extractor of extractors/registry.py (features_i3d, features_r21d, a user's
# features_<name>), all from this one definition: outputs, weights and the rest derive from the declaration.
for _visual in registry.visual_names():

    rule:
        name:
            f"features_{_visual}"
        input:
            mp4="results/{ds}/media/{vid}.mp4",
            wav="results/{ds}/media/{vid}.wav",
            manifest="results/{ds}/media/{vid}.json",  # a failure record to pass on; deleting it retries the video
            weights=feature_weights,
        output:
            **project.feature_outputs(_visual),
        wildcard_constraints:
            ds=project.datasets_with_visual(_visual),
        params:
            visual=_visual,
            recipe=lambda wc: project.extraction_recipe_json(wc.ds),
            device=untracked(DEVICE),  # no rerun trigger (common.smk: untracked)
            weights_root=untracked(WEIGHTS_ROOT),
            flow_out=extra_feature_args,  # --flow-out, the user's extractor files: see common.smk
        threads: 2
        resources:
            gpu=1,
        log:
            "logs/{ds}/features/{vid}.log",
        benchmark:
            "benchmarks/{ds}/features/{vid}.tsv"
        conda:
            "../../envs/avloc.yaml"
        shell:
            FEATURE_SHELL
