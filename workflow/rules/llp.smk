# Raw LLP clips -> per-second features -> data/avvp/<name>/{train,val,test}.npz for EAR's stages (avvp.smk), for
# benchmarks configured with `llp:` (features: extractors/llp/extract.py; EAR inputs: models/avvp/inputs.py). Clips are probed when the DAG is built (as the
# UnAV datasets are): undecodable ones are listed in logs/avvp/<name>/rejected_videos.tsv; CSV rows without
# a usable clip (LLP's YouTube downloads are never complete) are skipped by the split job and counted in
# its log. Stage-3 features: `visual` (ResNet-152 + R(2+1)D-18 by default; `clip_r21d` = CLIP + R(2+1)D-18 for
# feature set 2) and `audio` (VGGish; `clap_maps` = CLAP HTSAT feature maps per second for set 2); shapes in
# docs/recipes.md, "LLP feature shapes". The generator's CLIP + CLAP embeddings are extracted only when a mode
# needs pseudo-labels. One job per clip extracts every kind of it in one pass (shared decoding), so a new clip
# costs only its own extraction; the jobs run on resident extraction workers (extractors/worker.py, pool `llp`,
# entry extractors.llp.extract) that keep the networks loaded across clips. A clip that fails still gets its
# files (an empty .npz, `failed` in the .json) and the split job skips and counts it; a weights error fails the job.
# `dense_from: <dataset>` builds stage 1's dense AV data from a UnAV-format entry of `datasets` (EAR pre-trains
# its generator on UnAV-100): whole-video per-second CLIP + CLAP features and AV labels on 1 s steps.

LLP_NAMES = [n for n, s in config.get("avvp", {}).items() if "llp" in s]


DENSE_NAMES = [n for n, s in config.get("avvp", {}).items() if "dense_from" in s]


def llp_spec(name):
    """The `llp:` block; benchmarks without one (e.g. only `dense_from`) get the extractor defaults."""
    return config["avvp"][name].get("llp", {})


LLP_CSVS = {"train_csv": "AVVP_train.csv", "val_csv": "AVVP_val_pd.csv", "test_csv": "AVVP_test_pd.csv",
            "eval_audio_csv": "AVVP_eval_audio.csv", "eval_visual_csv": "AVVP_eval_visual.csv"}


def llp_source_dataset(name):
    """`from_dataset`: the UnAV-format `datasets` entry whose clips and annotations stand in for LLP."""
    ds = llp_spec(name).get("from_dataset")
    if ds is not None and (ds not in DATASETS or "annotations" not in DATASETS[ds]):
        raise WorkflowError(f"avvp.{name}.llp.from_dataset: {ds!r} is not a dataset with annotations in `datasets`")
    return ds


def llp_csv(name, key):
    if llp_source_dataset(name):
        return f"data/avvp/{name}/csv/{LLP_CSVS[key]}"
    spec = llp_spec(name)
    return str(Path(spec["annotations"]) / spec.get(key, LLP_CSVS[key]))


_LLP_FOUND = {}


def llp_videos(name):
    """{video_id: path} of the decodable clips; the others are logged with their reason. Probed once per
    Snakemake run (input functions call this for every job)."""
    ds = llp_source_dataset(name)
    if ds:
        return videos(ds)
    if name not in _LLP_FOUND:
        found = discovery.discover(Path(llp_spec(name)["videos"]), EXTENSIONS, min_duration_s=1.0,
                                   cache=Path("results") / "avvp" / name / "probe_cache.json")
        discovery.write_rejections(found.rejected, Path("logs") / "avvp" / name / "rejected_videos.tsv")
        _LLP_FOUND[name] = found.accepted
    return _LLP_FOUND[name]


_LLP_SPLITS = {}


def llp_split_videos(name, split):
    """The usable clips of one split, in CSV order. Memoised per Snakemake run: every llp_features job's
    input function reaches this, and re-reading the CSVs (or UnAV's JSON) per job made the DAG quadratic."""
    key = (name, split)
    if key not in _LLP_SPLITS:
        _LLP_SPLITS[key] = _read_llp_split(name, split)
    return _LLP_SPLITS[key]


def _read_llp_split(name, split):
    from models.data.llp import read_llp
    from models.data.unav import read_unav

    ds = llp_source_dataset(name)
    if ds:  # the CSVs are made by a job; the split is known from the annotations already
        clips = videos(ds)  # first: waits for the demo generator
        named = {"test": "test", "val": "validation"}  # the others are train (models.data.llp.unav_to_llp_csvs)
        ids = [v for v, a in read_unav(DATASETS[ds]["annotations"]).items()
               if a.subset == named.get(split) or (split == "train" and a.subset not in named.values())]
        return [v for v in ids if v in clips]
    ids = read_llp(llp_csv(name, f"{split}_csv"))
    clips = llp_videos(name)
    return [v for v in ids if v in clips]


def llp_splits(name):
    """The splits a benchmark reads: val only where stage 3 selects its epoch on it."""
    return ["train", "val", "test"] if avvp_selects_on_val(name) else ["train", "test"]


_LLP_CLIPS = {}


def llp_clips(name):
    """{id: path} of the clips of the split CSVs (other files in the folder are not extracted); memoised
    as llp_split_videos."""
    if name not in _LLP_CLIPS:
        clips = llp_videos(name)
        _LLP_CLIPS[name] = {v: clips[v] for split in llp_splits(name) for v in llp_split_videos(name, split)}
    return _LLP_CLIPS[name]


def llp_needs_generator(name):
    return any(m != "video" for m in avvp_modes(name))


def llp_kinds(name):
    from extractors.llp.extract import base_kinds

    spec = llp_spec(name)
    kinds = [*base_kinds(spec.get("visual", "resnet152_r21d")), *base_kinds(spec.get("audio", "vggish"))]
    if llp_needs_generator(name):
        kinds += ["clip", "clap"]
    return list(dict.fromkeys(kinds))


def llp_weight_files(name, text=False):
    from extractors.llp.extract import weights_needed

    spec = llp_spec(name)
    kinds = (["clip", "clap"] if llp_needs_generator(name) else []) if text else llp_kinds(name)
    names = weights_needed(kinds, spec.get("clip_model", "ViT-L-14"), spec.get("weights", "pretrained"), text=text)
    return [f"{WEIGHTS_ROOT}/{REGISTRY[n].filename}" for n in names]


def llp_common_args(name):
    spec = llp_spec(name)
    return (f"--weights {spec.get('weights', 'pretrained')} --weights-root {shlex.quote(WEIGHTS_ROOT)} "
            f"--clip-model {shlex.quote(spec.get('clip_model', 'ViT-L-14'))} --seed {avvp_spec(name).get('seed', 0)}")


wildcard_constraints:
    llp="|".join(re.escape(n) for n in LLP_NAMES) or "^$",
    dn="|".join(re.escape(n) for n in DENSE_NAMES) or "^$",


def llp_feature_shell(bench_dir):
    """The per-clip job; the worker writes the job's own resources beside Snakemake's benchmark file."""
    return (
        f"python -m extractors.worker llp --threads {{threads}} --record {bench_dir}/{{wildcards.vid:q}}.worker.json "
        "--entry extractors.llp.extract -- "
        "clip --video={input.video:q} --out {output.features:q} --kinds {params.kinds} --max-seconds {params.seconds} "
        "{params.common} --device {DEVICE} > {log:q} 2>&1"
    )


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


def llp_split_features(wc):
    """The per-clip feature files of the split's clips (known once the clips are: may wait for the demo).
    The job reads them from their folder (--features-dir): LLP's 11,849 paths would not fit a command line."""
    wanted = llp_split_videos(wc.llp, wc.split)
    if not wanted:
        raise WorkflowError(f"avvp.{wc.llp}: no usable clip for the {wc.split} split (see "
                            f"logs/avvp/{wc.llp}/rejected_videos.tsv and {llp_csv(wc.llp, f'{wc.split}_csv')})")
    return [f"results/avvp/{wc.llp}/features/clips/{v}.npz" for v in wanted]


rule llp_split:
    input:
        features=llp_split_features,
        text="data/avvp/{llp}/text.npz",
        weak=lambda wc: llp_csv(wc.llp, f"{wc.split}_csv"),
        evals=lambda wc: [llp_csv(wc.llp, "eval_audio_csv"), llp_csv(wc.llp, "eval_visual_csv")]
        if wc.split != "train" else [],
    output:
        "data/avvp/{llp}/{split}.npz",
    wildcard_constraints:
        split="train|val|test",
    params:
        evals=lambda wc: (f"--eval-audio-csv {shlex.quote(llp_csv(wc.llp, 'eval_audio_csv'))} "
                          f"--eval-visual-csv {shlex.quote(llp_csv(wc.llp, 'eval_visual_csv'))}")
        if wc.split != "train" else "",
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


def dense_dataset(name):
    ds = avvp_spec(name)["dense_from"]
    if ds not in DATASETS or "annotations" not in DATASETS[ds]:
        raise WorkflowError(f"avvp.{name}.dense_from: {ds!r} is not a dataset with annotations in `datasets`")
    return ds


def dense_weight_files(name):
    from extractors.llp.extract import weights_needed

    spec = llp_spec(name)
    names = weights_needed(["clip", "clap"], spec.get("clip_model", "ViT-L-14"), spec.get("weights", "pretrained"))
    return [f"{WEIGHTS_ROOT}/{REGISTRY[n].filename}" for n in names]


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
