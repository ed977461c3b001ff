# Decode every video to a constant frame rate mp4 at the source resolution and a 16 kHz mono float32 wav
# (the reference audio chain); the manifest records has_audio (silent track when the video has none).
# Runs on a resident worker (extractors/worker/): PyAV, resampy's compiled filter and numpy are loaded
# once per worker, not once per video. A video whose own content cannot be normalized (MediaError) gets a
# failure record instead (manifest with `failed` and `stage: media`, empty mp4/wav; extractors/extract.py)
# and the job succeeds, so the dataset goes on without it; delete the manifest to retry the video.

rule media:
    input:
        source_video,
    output:
        mp4="results/{ds}/media/{vid}.mp4",
        wav="results/{ds}/media/{vid}.wav",
        manifest="results/{ds}/media/{vid}.json",
    params:
        fps=lambda wc: project.recipe(wc.ds).fps,
        min_duration=lambda wc: project.recipe(wc.ds).min_duration_s,
        short_audio=lambda wc: project.recipe(wc.ds).short_audio,
        audio_alignment=lambda wc: project.recipe(wc.ds).audio_alignment,
    log:
        "logs/{ds}/media/{vid}.log",
    benchmark:
        "benchmarks/{ds}/media/{vid}.tsv"
    conda:
        "../../envs/media.yaml"
    shell:
        "python -m extractors.worker media --record benchmarks/{wildcards.ds:q}/media/{wildcards.vid:q}.worker.json "
        "-- media --src {input:q} --mp4 {output.mp4:q} --wav {output.wav:q} "
        "--fps {params.fps} --min-duration {params.min_duration} --short-audio {params.short_audio} --audio-alignment {params.audio_alignment} > {log:q} 2>&1"
