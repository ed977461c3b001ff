# Raw LLP clips -> per-second features -> data/avvp/<name>/{train,val,test}.npz for EAR's stages (avvp.smk), for
# benchmarks configured with `llp:` (features: extractors/llp/extract.py; EAR inputs: models/avvp/inputs.py). Clips are probed when the DAG is built (as the
# UnAV datasets are): undecodable ones are listed in logs/avvp/<name>/rejected_videos.tsv; CSV rows without
# a usable clip (LLP's YouTube downloads are never complete) are skipped by the split job and counted in
# its log. Stage-3 features: `visual` (ResNet-152 + R(2+1)D-18 by default; `clip_r21d` = CLIP + R(2+1)D-18 for
# feature set 2) and `audio` (VGGish; `clap_maps` = CLAP HTSAT feature maps per second for set 2); shapes in
# docs/recipes.md, "LLP feature shapes". The generator's CLIP + CLAP embeddings are extracted only when a mode
# needs pseudo-labels. One job per clip extracts every kind of it in one pass (shared decoding), so a new clip
# costs only its own extraction; the jobs run on resident extraction workers (extractors/worker/, pool `llp`,
# entry extractors.llp.extract) that keep the networks loaded across clips. A clip that fails still gets its
# files (an empty .npz, `failed` in the .json) and the split job skips and counts it; a weights error fails the job.
# `dense_from: <dataset>` builds stage 1's dense AV data from a UnAV-format entry of `datasets` (EAR pre-trains
# its generator on UnAV-100): whole-video per-second CLIP + CLAP features and AV labels on 1 s steps.

wildcard_constraints:
    llp="|".join(re.escape(n) for n in benchmarks.llp_names) or "^$",
    dn="|".join(re.escape(n) for n in benchmarks.dense_names) or "^$",


rule llp_features:
    input:
        # as configured (relative stays relative: a moved project is not re-extracted); the shell's
        # --video=PATH form keeps an id starting with '-' from reading as an option
        video=lambda wc: str(benchmarks.clips(wc.llp)[wc.vid]),
        weights=lambda wc: benchmarks.weight_files(wc.llp),
    output:
        features="results/avvp/{llp}/features/clips/{vid}.npz",
        provenance="results/avvp/{llp}/features/clips/{vid}.json",
    wildcard_constraints:
        vid="[^/]+",
    params:
        kinds=lambda wc: ",".join(benchmarks.kinds(wc.llp)),
        seconds=LLP_SECONDS,
        common=lambda wc: benchmarks.common_args(wc.llp),
        device=untracked(DEVICE),  # no rerun trigger (common.smk: untracked)
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/avvp/{llp}/features/{vid}.log",
    benchmark:
        "benchmarks/avvp/{llp}/features/{vid}.tsv"
    conda:
        "../../envs/avloc.yaml"
    shell:
        llp_feature_shell("benchmarks/avvp/{wildcards.llp:q}/features")


rule llp_text:
    input:
        csvs=lambda wc: benchmarks.split_csvs(wc.llp),
        weights=lambda wc: benchmarks.weight_files(wc.llp, text=True),
    output:
        "data/avvp/{llp}/text.npz",
    params:
        common=lambda wc: benchmarks.common_args(wc.llp),
        encoders=lambda wc: benchmarks.unless_generator(wc.llp, "--no-encoders"),
    log:
        "logs/avvp/{llp}/text.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.inputs text --csv {input.csvs:q} --out {output:q} {params.common} {params.encoders} "
        "> {log:q} 2>&1"


rule llp_split:
    input:
        features=lambda wc: benchmarks.split_features(wc.llp, wc.split),
        text="data/avvp/{llp}/text.npz",
        weak=lambda wc: benchmarks.csv(wc.llp, f"{wc.split}_csv"),
        evals=lambda wc: benchmarks.eval_csvs(wc.llp, wc.split),
    output:
        "data/avvp/{llp}/{split}.npz",
    wildcard_constraints:
        split="train|val|test",
    params:
        evals=lambda wc: benchmarks.eval_args(wc.llp, wc.split),
        visual=lambda wc: benchmarks.llp_setting(wc.llp, "visual"),
        audio=lambda wc: benchmarks.llp_setting(wc.llp, "audio"),
        generator=lambda wc: benchmarks.unless_generator(wc.llp, "--no-generator"),
    log:
        "logs/avvp/{llp}/split_{split}.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.inputs split --weak-csv {input.weak:q} {params.evals} "
        "--features-dir results/avvp/{wildcards.llp:q}/features/clips "
        "--text {input.text:q} --visual {params.visual} --audio {params.audio} {params.generator} "
        "--out {output:q} > {log:q} 2>&1"


rule avvp_dense_features:
    input:
        video=lambda wc: benchmarks.dense_clip(wc.dn, wc.vid),
        weights=lambda wc: benchmarks.dense_weight_files(wc.dn),
    output:
        features="results/avvp/{dn}/dense_features/clips/{vid}.npz",
        provenance="results/avvp/{dn}/dense_features/clips/{vid}.json",
    wildcard_constraints:
        vid="[^/]+",
    params:
        kinds="clip,clap",
        common=lambda wc: benchmarks.common_args(wc.dn),
        seconds=lambda wc: benchmarks.dense_t_max(wc.dn),
        device=untracked(DEVICE),  # no rerun trigger (common.smk: untracked)
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/avvp/{dn}/dense_features/{vid}.log",
    benchmark:
        "benchmarks/avvp/{dn}/dense_features/{vid}.tsv"
    conda:
        "../../envs/avloc.yaml"
    shell:
        llp_feature_shell("benchmarks/avvp/{wildcards.dn:q}/dense_features")


rule avvp_dense_text:
    input:
        annotations=lambda wc: benchmarks.dense_annotations(wc.dn),
        weights=lambda wc: benchmarks.dense_weight_files(wc.dn),
    output:
        "data/avvp/{dn}/dense_text.npz",
    params:
        common=lambda wc: benchmarks.common_args(wc.dn),
    log:
        "logs/avvp/{dn}/dense_text.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.inputs text --unav-json {input.annotations:q} --out {output:q} {params.common} "
        "> {log:q} 2>&1"


rule avvp_dense:
    input:
        features=lambda wc: benchmarks.dense_features(wc.dn),
        text="data/avvp/{dn}/dense_text.npz",
        annotations=lambda wc: benchmarks.dense_annotations(wc.dn),
    output:
        "data/avvp/{dn}/dense.npz",
    params:
        t_max=lambda wc: benchmarks.dense_t_max(wc.dn),
    log:
        "logs/avvp/{dn}/dense.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.inputs dense --unav-json {input.annotations:q} "
        "--features-dir results/avvp/{wildcards.dn:q}/dense_features/clips "
        "--text {input.text:q} --t-max {params.t_max} --out {output:q} > {log:q} 2>&1"


rule llp_csvs:
    input:
        annotations=lambda wc: benchmarks.source_annotations(wc.llp),
    output:
        [f"data/avvp/{{llp}}/csv/{f}" for f in LLP_CSVS.values()],
    log:
        "logs/avvp/{llp}/csvs.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.inputs csvs --unav-json {input.annotations:q} --out-dir data/avvp/{wildcards.llp:q}/csv "
        "> {log:q} 2>&1"
