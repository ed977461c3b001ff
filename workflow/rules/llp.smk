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
    llp="|".join(re.escape(n) for n in LLP_NAMES) or "^$",
    dn="|".join(re.escape(n) for n in DENSE_NAMES) or "^$",


rule llp_features:
    input:
        # as configured (relative stays relative: a moved project is not re-extracted); the shell's
        # --video=PATH form keeps an id starting with '-' from reading as an option
        video=lambda wc: str(llp_clips(wc.llp)[wc.vid]),
        weights=lambda wc: llp_weight_files(wc.llp),
    output:
        features="results/avvp/{llp}/features/clips/{vid}.npz",
        provenance="results/avvp/{llp}/features/clips/{vid}.json",
    wildcard_constraints:
        vid="[^/]+",
    params:
        kinds=lambda wc: ",".join(llp_kinds(wc.llp)),
        seconds=10,  # LLP's clips (extractors.llp.features.N_SEGMENTS)
        common=lambda wc: llp_common_args(wc.llp),
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
        csvs=lambda wc: [llp_csv(wc.llp, f"{split}_csv") for split in llp_splits(wc.llp)],
        weights=lambda wc: llp_weight_files(wc.llp, text=True),
    output:
        "data/avvp/{llp}/text.npz",
    params:
        common=lambda wc: llp_common_args(wc.llp),
        encoders=lambda wc: "" if llp_needs_generator(wc.llp) else "--no-encoders",
    log:
        "logs/avvp/{llp}/text.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.inputs text --csv {input.csvs:q} --out {output:q} {params.common} {params.encoders} "
        "> {log:q} 2>&1"


rule llp_split:
    input:
        features=llp_split_features,
        text="data/avvp/{llp}/text.npz",
        weak=lambda wc: llp_csv(wc.llp, f"{wc.split}_csv"),
        evals=lambda wc: [llp_csv(wc.llp, "eval_audio_csv"), llp_csv(wc.llp, "eval_visual_csv")]
        if llp_split_has_gt(wc.llp, wc.split) else [],
    output:
        "data/avvp/{llp}/{split}.npz",
    wildcard_constraints:
        split="train|val|test",
    params:
        evals=lambda wc: (f"--eval-audio-csv {shlex.quote(llp_csv(wc.llp, 'eval_audio_csv'))} "
                          f"--eval-visual-csv {shlex.quote(llp_csv(wc.llp, 'eval_visual_csv'))}")
        if llp_split_has_gt(wc.llp, wc.split) else "",
        visual=lambda wc: llp_spec(wc.llp).get("visual", "resnet152_r21d"),
        audio=lambda wc: llp_spec(wc.llp).get("audio", "vggish"),
        generator=lambda wc: "" if llp_needs_generator(wc.llp) else "--no-generator",
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
        video=lambda wc: str(videos(dense_dataset(wc.dn))[wc.vid]),  # relative as configured (llp_features)
        weights=lambda wc: dense_weight_files(wc.dn),
    output:
        features="results/avvp/{dn}/dense_features/clips/{vid}.npz",
        provenance="results/avvp/{dn}/dense_features/clips/{vid}.json",
    wildcard_constraints:
        vid="[^/]+",
    params:
        kinds="clip,clap",
        common=lambda wc: llp_common_args(wc.dn),
        seconds=lambda wc: avvp_spec(wc.dn).get("dense_t_max", 60),
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
        annotations=lambda wc: DATASETS[dense_dataset(wc.dn)]["annotations"],
        weights=lambda wc: dense_weight_files(wc.dn),
    output:
        "data/avvp/{dn}/dense_text.npz",
    params:
        common=lambda wc: llp_common_args(wc.dn),
    log:
        "logs/avvp/{dn}/dense_text.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.inputs text --unav-json {input.annotations:q} --out {output:q} {params.common} "
        "> {log:q} 2>&1"


rule avvp_dense:
    input:
        features=lambda wc: [f"results/avvp/{wc.dn}/dense_features/clips/{v}.npz"
                             for v in videos(dense_dataset(wc.dn))],
        text="data/avvp/{dn}/dense_text.npz",
        annotations=lambda wc: DATASETS[dense_dataset(wc.dn)]["annotations"],
    output:
        "data/avvp/{dn}/dense.npz",
    params:
        t_max=lambda wc: avvp_spec(wc.dn).get("dense_t_max", 60),
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
        annotations=lambda wc: DATASETS[llp_source_dataset(wc.llp)]["annotations"],
    output:
        [f"data/avvp/{{llp}}/csv/{f}" for f in LLP_CSVS.values()],
    log:
        "logs/avvp/{llp}/csvs.log",
    conda:
        "../../envs/avloc.yaml"
    shell:
        "python -m models.avvp.inputs csvs --unav-json {input.annotations:q} --out-dir data/avvp/{wildcards.llp:q}/csv "
        "> {log:q} 2>&1"
