# Raw LLP clips -> per-second features -> data/avvp/<name>/{train,test}.npz for EAR's stages (avvp.smk), for
# benchmarks configured with `llp:` (extractors/llp_video.py). Clips are probed when the DAG is built (as the
# UnAV datasets are): undecodable ones are listed in logs/avvp/<name>/rejected_videos.tsv; CSV rows without
# a usable clip (LLP's YouTube downloads are never complete) are skipped by the split job and counted in
# its log. Stage-3 features: `visual` (ResNet-152 + R(2+1)D-18 by default) and `audio` (VGGish); the
# generator's CLIP + CLAP features are extracted only when a mode needs pseudo-labels.

LLP_NAMES = [n for n, s in config.get("avvp", {}).items() if "llp" in s]


def llp_spec(name):
    return config["avvp"][name]["llp"]


def llp_csv(name, key):
    defaults = {"train_csv": "AVVP_train.csv", "test_csv": "AVVP_test_pd.csv",
                "eval_audio_csv": "AVVP_eval_audio.csv", "eval_visual_csv": "AVVP_eval_visual.csv"}
    spec = llp_spec(name)
    return str(Path(spec["annotations"]) / spec.get(key, defaults[key]))


def llp_videos(name):
    """{video_id: path} of the decodable clips; the others are logged with their reason."""
    found = discovery.discover(Path(llp_spec(name)["videos"]), EXTENSIONS, min_duration_s=1.0,
                               cache=Path("results") / "avvp" / name / "probe_cache.json")
    discovery.write_rejections(found.rejected, Path("logs") / "avvp" / name / "rejected_videos.tsv")
    return found.accepted


def llp_split_videos(name, split):
    from models.data import read_llp

    ids = read_llp(llp_csv(name, f"{split}_csv"))
    clips = llp_videos(name)
    return [v for v in ids if v in clips]


def llp_needs_generator(name):
    return any(m != "video" for m in avvp_modes(name))


def llp_kinds(name):
    from extractors.llp_video import base_kinds

    spec = llp_spec(name)
    kinds = [*base_kinds(spec.get("visual", "resnet152_r21d")), *base_kinds(spec.get("audio", "vggish"))]
    if llp_needs_generator(name):
        kinds += ["clip", "clap"]
    return list(dict.fromkeys(kinds))


def llp_weight_files(name, text=False):
    from extractors.llp_video import weights_needed

    spec = llp_spec(name)
    kinds = (["clip", "clap"] if llp_needs_generator(name) else ["clip"]) if text else llp_kinds(name)
    names = weights_needed(kinds, spec.get("clip_model", "ViT-L-14"), spec.get("weights", "pretrained"), text=text)
    return [f"{WEIGHTS_ROOT}/{REGISTRY[n].filename}" for n in names]


def llp_common_args(name):
    spec = llp_spec(name)
    return (f"--weights {spec.get('weights', 'pretrained')} --weights-root {shlex.quote(WEIGHTS_ROOT)} "
            f"--clip-model {shlex.quote(spec.get('clip_model', 'ViT-L-14'))} --seed {avvp_spec(name).get('seed', 0)}")


wildcard_constraints:
    llp="|".join(re.escape(n) for n in LLP_NAMES) or "^$",


rule llp_features:
    input:
        video=lambda wc: str(llp_videos(wc.llp)[wc.vid]),
        weights=lambda wc: llp_weight_files(wc.llp),
    output:
        features="results/avvp/{llp}/features/{vid}.npz",
        provenance="results/avvp/{llp}/features/{vid}.json",
    params:
        kinds=lambda wc: ",".join(llp_kinds(wc.llp)),
        common=lambda wc: llp_common_args(wc.llp),
    threads: 2
    resources:
        gpu=1,
    log:
        "logs/avvp/{llp}/features/{vid}.log",
    conda:
        "../../envs/extract.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m extractors.llp_video video --video {input.video:q} "
        "--out {output.features:q} --kinds {params.kinds} {params.common} --device {DEVICE} > {log:q} 2>&1"


rule llp_text:
    input:
        csvs=lambda wc: [llp_csv(wc.llp, "train_csv"), llp_csv(wc.llp, "test_csv")],
        weights=lambda wc: llp_weight_files(wc.llp, text=True),
    output:
        "data/avvp/{llp}/text.npz",
    params:
        common=lambda wc: llp_common_args(wc.llp),
        audio=lambda wc: "" if llp_needs_generator(wc.llp) else "--no-audio",
    log:
        "logs/avvp/{llp}/text.log",
    conda:
        "../../envs/extract.yaml"
    shell:
        "python -m extractors.llp_video text --csv {input.csvs:q} --out {output:q} {params.common} {params.audio} "
        "> {log:q} 2>&1"


def llp_split_inputs(wc):
    files = {"features": [f"results/avvp/{wc.llp}/features/{v}.npz" for v in llp_split_videos(wc.llp, wc.split)],
             "text": f"data/avvp/{wc.llp}/text.npz", "weak": llp_csv(wc.llp, f"{wc.split}_csv")}
    if wc.split == "test":
        files["eval_audio"] = llp_csv(wc.llp, "eval_audio_csv")
        files["eval_visual"] = llp_csv(wc.llp, "eval_visual_csv")
    return files


rule llp_split:
    input:
        unpack(llp_split_inputs),
    output:
        "data/avvp/{llp}/{split}.npz",
    wildcard_constraints:
        split="train|test",
    params:
        evals=lambda wc, input: (f"--eval-audio-csv {shlex.quote(input.eval_audio)} "
                                 f"--eval-visual-csv {shlex.quote(input.eval_visual)}") if wc.split == "test" else "",
        features=lambda wc: shlex.quote(f"results/avvp/{wc.llp}/features"),
        visual=lambda wc: llp_spec(wc.llp).get("visual", "resnet152_r21d"),
        audio=lambda wc: llp_spec(wc.llp).get("audio", "vggish"),
        generator=lambda wc: "" if llp_needs_generator(wc.llp) else "--no-generator",
    log:
        "logs/avvp/{llp}/split_{split}.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m extractors.llp_video split --weak-csv {input.weak:q} {params.evals} --features-dir {params.features} "
        "--text {input.text:q} --visual {params.visual} --audio {params.audio} {params.generator} "
        "--out {output:q} > {log:q} 2>&1"
