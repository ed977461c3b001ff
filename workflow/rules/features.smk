# Per-video features: one job per video computes the visual stream (RAFT flow + two-stream I3D, or
# R(2+1)D-34 for ActivityNet) and VGGish from the media stage's mp4/wav. One job rather than one per
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


rule features_i3d:
    input:
        mp4="results/{ds}/media/{vid}.mp4",
        wav="results/{ds}/media/{vid}.wav",
        manifest="results/{ds}/media/{vid}.json",  # a failure record to pass on; deleting it retries the video
        weights=feature_weights,
    output:
        visual="results/{ds}/features/i3d/{vid}.npy",
        visual_provenance="results/{ds}/features/i3d/{vid}.json",
        audio="results/{ds}/features/vggish/{vid}.npy",
        audio_provenance="results/{ds}/features/vggish/{vid}.json",
        **({"flow": "results/{ds}/flow/{vid}.npz", "flow_provenance": "results/{ds}/flow/{vid}.npz.json"}
           if KEEP_FLOW else {}),
    wildcard_constraints:
        ds=datasets_with_visual("i3d"),
    params:
        visual="i3d",
        recipe=lambda wc: extraction_recipe_json(wc.ds),
        device=untracked(DEVICE),  # no rerun trigger (common.smk: untracked)
        weights_root=untracked(WEIGHTS_ROOT),
        flow_out=lambda wc, output: f"--flow-out {shlex.quote(output.flow)}" if KEEP_FLOW else "",
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


rule features_r21d:
    input:
        mp4="results/{ds}/media/{vid}.mp4",
        wav="results/{ds}/media/{vid}.wav",
        manifest="results/{ds}/media/{vid}.json",  # a failure record to pass on; deleting it retries the video
        weights=feature_weights,
    output:
        visual="results/{ds}/features/r21d/{vid}.npy",
        visual_provenance="results/{ds}/features/r21d/{vid}.json",
        audio="results/{ds}/features/vggish/{vid}.npy",
        audio_provenance="results/{ds}/features/vggish/{vid}.json",
    wildcard_constraints:
        ds=datasets_with_visual("r21d"),
    params:
        visual="r21d",
        recipe=lambda wc: extraction_recipe_json(wc.ds),
        device=untracked(DEVICE),  # no rerun trigger (common.smk: untracked)
        weights_root=untracked(WEIGHTS_ROOT),
        flow_out="",
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
