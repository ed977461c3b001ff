# Per-video features. Flow is temp() unless keep_flow: it is large and only I3D reads it. The recipe
# (minus training-only fields) is a param, so a recipe edit reruns exactly these jobs.


def maybe_temp(path):
    return path if config.get("keep_flow", False) else temp(path)


rule flow:
    input:
        mp4="results/{ds}/media/{vid}.mp4",
        weights=lambda wc: weight_files(wc.ds, "flow"),
    output:
        flow=maybe_temp("results/{ds}/flow/{vid}.npz"),
        provenance="results/{ds}/flow/{vid}.npz.json",
    params:
        recipe=lambda wc: extraction_recipe_json(wc.ds),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/{ds}/flow/{vid}.log",
    benchmark:
        "benchmarks/{ds}/flow/{vid}.tsv"
    conda:
        "../../envs/extract.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m extractors.extract flow --mp4 {input.mp4:q} --out {output.flow:q} "
        "--recipe-json {params.recipe:q} --device {DEVICE} --weights-root {WEIGHTS_ROOT:q} > {log:q} 2>&1"


rule i3d:
    input:
        mp4="results/{ds}/media/{vid}.mp4",
        flow="results/{ds}/flow/{vid}.npz",
        weights=lambda wc: weight_files(wc.ds, "i3d"),
    output:
        features="results/{ds}/features/i3d/{vid}.npy",
        provenance="results/{ds}/features/i3d/{vid}.json",
    params:
        recipe=lambda wc: extraction_recipe_json(wc.ds),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/{ds}/i3d/{vid}.log",
    benchmark:
        "benchmarks/{ds}/i3d/{vid}.tsv"
    conda:
        "../../envs/extract.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m extractors.extract i3d --mp4 {input.mp4:q} --flow {input.flow:q} "
        "--out {output.features:q} --recipe-json {params.recipe:q} --device {DEVICE} "
        "--weights-root {WEIGHTS_ROOT:q} > {log:q} 2>&1"


rule r21d:
    input:
        mp4="results/{ds}/media/{vid}.mp4",
        weights=lambda wc: weight_files(wc.ds, "r21d"),
    output:
        features="results/{ds}/features/r21d/{vid}.npy",
        provenance="results/{ds}/features/r21d/{vid}.json",
    params:
        recipe=lambda wc: extraction_recipe_json(wc.ds),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/{ds}/r21d/{vid}.log",
    benchmark:
        "benchmarks/{ds}/r21d/{vid}.tsv"
    conda:
        "../../envs/extract.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m extractors.extract r21d --mp4 {input.mp4:q} "
        "--out {output.features:q} --recipe-json {params.recipe:q} --device {DEVICE} "
        "--weights-root {WEIGHTS_ROOT:q} > {log:q} 2>&1"


rule vggish:
    input:
        wav="results/{ds}/media/{vid}.wav",
        weights=lambda wc: weight_files(wc.ds, "vggish"),
    output:
        features="results/{ds}/features/vggish/{vid}.npy",
        provenance="results/{ds}/features/vggish/{vid}.json",
    params:
        recipe=lambda wc: extraction_recipe_json(wc.ds),
    threads: 1
    log:
        "logs/{ds}/vggish/{vid}.log",
    benchmark:
        "benchmarks/{ds}/vggish/{vid}.tsv"
    conda:
        "../../envs/extract.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m extractors.extract vggish --wav {input.wav:q} "
        "--out {output.features:q} --recipe-json {params.recipe:q} --device cpu "
        "--weights-root {WEIGHTS_ROOT:q} > {log:q} 2>&1"
