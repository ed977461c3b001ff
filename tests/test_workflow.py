"""The Snakemake workflow end to end on tiny data, through the snakemake CLI in a temporary directory:
DAG shape, a real run (features, metrics, report), incremental reruns, a broken video among good ones,
and the SLURM profile."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from extractors.discovery import read_tsv
from extractors.recipes import get_recipe
from extractors.synthetic_videos import make_demo_dataset

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def smk(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--configfile",
           str(workdir / "config.yaml"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table (rule, count) from a dry run."""
    counts: dict[str, int] = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table, counts = True, {}
            continue
        if in_table:
            m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
            if m and m.group(1) != "total":
                counts[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                in_table = False
    return counts


def write_config(workdir: Path, videos: Path, annotations: Path, **recipe_overrides) -> None:
    cfg = {
        "datasets": {
            "tiny": {
                "videos": str(videos), "recipe": "demo", "annotations": str(annotations),
                "recipe_overrides": {"t_max": 16, **recipe_overrides},
                "models": ["mil"], "train": {"epochs": 2, "batch_size": 2, "lr": 0.001, "seed": 0},
            }
        }
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tinydata")
    make_demo_dataset(root, n_videos=5, duration_s=3.0, seed=1)
    return root / "videos", root / "annotations.json"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data) -> Path:
    """One full real run on the tiny dataset with an odd file name and a broken file among them."""
    videos_src, annotations = tiny_data
    work = tmp_path_factory.mktemp("work")
    videos = work / "videos"
    shutil.copytree(videos_src, videos)
    first = sorted(videos.glob("*.mp4"))[0]
    odd = videos / "it's a $clip ü.mp4"
    first.rename(odd)
    ann = json.loads(annotations.read_text())
    ann["database"][odd.stem] = ann["database"].pop(first.stem)
    (work / "annotations.json").write_text(json.dumps(ann))
    (videos / "broken.mp4").write_text("this is not a video\n")
    write_config(work, videos, work / "annotations.json")
    smk(work, "--cores", "2", "--workflow-profile", "none", "--keep-going", "--resources", "gpu=1")
    return work


def test_dry_run_has_one_job_per_video_and_per_model(tmp_path, tiny_data):
    videos, annotations = tiny_data
    write_config(tmp_path, videos, annotations)
    out = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1").stdout
    counts = job_counts(out)
    n = len(list(videos.glob("*.mp4")))
    assert {k: counts.get(k) for k in ("media", "features_i3d")} == {"media": n, "features_i3d": n}
    assert len(counts) == 9, f"two jobs per video (media, features) plus seven dataset-level jobs: {counts}"
    assert counts["train"] == counts["evaluate"] == counts["metrics_page"] == 1
    assert counts["feature_store"] == counts["compare"] == counts["summary"] == 1
    assert "features_r21d" not in counts and "fetch_weights" not in counts  # demo: I3D recipe, random weights


def test_real_run_features_metrics_and_report(finished_run):
    work = finished_run
    res = work / "results" / "tiny"
    i3d = sorted((res / "features" / "i3d").glob("*.npy"))
    vgg = sorted((res / "features" / "vggish").glob("*.npy"))
    assert len(i3d) == len(vgg) == 5
    for f in i3d:
        x = np.load(f)
        assert x.ndim == 2 and x.shape[1] == 2048 and x.dtype == np.float32
        prov = json.loads(f.with_suffix(".json").read_text())
        assert prov["weights"] == "random" and prov["T"] == x.shape[0]
        # demo recipe: 12.5 FPS, 12-frame windows, step 12 -> floor((N - 13) / 12) + 1 windows (N frames at
        # 12.5 FPS, from the media manifest: 3 s clips)
        r = get_recipe("demo")
        assert (r.fps, r.stack, r.step) == (12.5, 12, 12)
        n = json.loads((res / "media" / f"{f.stem}.json").read_text())["n_frames"]
        assert 36 <= n <= 38 and x.shape[0] == (n - 13) // 12 + 1
    for f in vgg:
        assert np.load(f).shape[1] == 128
    for stage, min_rss in (("media", 30), ("features", 150)):  # the worker's numbers, not the ~20 MB client's
        recs = [json.loads((work / "benchmarks" / "tiny" / stage / f"{f.stem}.worker.json").read_text()) for f in i3d]
        assert all(r["rc"] == 0 and r["max_rss_mb"] > min_rss and r["wall_s"] > 0 for r in recs), recs
    metrics = json.loads((res / "models" / "mil" / "metrics.json").read_text())
    assert 0.0 <= metrics["avg"] <= 1.0
    assert (res / "compare.md").read_text().count("|") > 10
    html = (res / "summary.html").read_text()
    assert "WEIGHTS: RANDOM" in html and "broken.mp4" in html
    assert re.search(r"<td>mil</td>(<td>\d+\.\d</td>){10}</tr>", html), "mAP at tIoU 0.1 ... 0.9 and Avg"
    assert any((res / "models" / "mil" / "timelines").glob("*.png"))


def test_snakemake_report_builds_from_a_finished_run(finished_run):
    """`snakemake --report results/report.html` (README) on a finished run: needs pygments, which the
    package pulls in through snakemake[reports]; without it Snakemake refuses to build the report."""
    work = finished_run
    out = work / "results" / "report.html"
    smk(work, "--report", str(out), "--workflow-profile", "none")
    html = out.read_text()
    assert len(html) > 10_000 and "summary.html" in html and "metrics.html" in html and "compare.html" in html


def test_predict_cli_uses_the_checkpoint_recipe(finished_run, tmp_path):
    """README "Predict on your own videos": `python -m models.run.predict VIDEO --checkpoint best.pt --out-dir
    D` with neither --recipe nor --classes (both stored in the checkpoint) extracts with the training
    recipe (demo, random weights; the old default unav100 would need pretrained weights) and gives the
    events the workflow's features give, and the same as the workflow's `predict_with` route."""
    from extractors.recipes import Recipe
    from models.run.predict import manifest_duration, predict_features
    from models.run.runtime import load_checkpoint

    work = finished_run
    res = work / "results" / "tiny"
    vid = sorted(p.stem for p in (res / "features" / "i3d").glob("*.npy"))[-1]
    ckpt = res / "models" / "mil" / "best.pt"
    proc = subprocess.run([sys.executable, "-m", "models.run.predict", str(work / "videos" / f"{vid}.mp4"),
                           "--checkpoint", str(ckpt), "--out-dir", str(tmp_path / "out"), "--device", "cpu"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "out" / f"{vid}.json").read_text())
    ck = load_checkpoint(ckpt)
    # the JSON's recipe is the checkpoint's without the fields of a flow method it did not use (issue 33)
    assert got["recipe"] == Recipe(**ck["recipe"]).provenance() and ck["recipe"]["name"] == "demo"
    assert got["weights"] == "random" and "raft_iters" not in got["recipe"] and got["recipe"]["flow"] == "farneback"
    assert (tmp_path / "out" / f"{vid}.csv").read_text().startswith("start_s,end_s,label,score")
    recipe = Recipe(**ck["recipe"])
    want = predict_features(ckpt, np.load(res / "features" / "vggish" / f"{vid}.npy"),
                            np.load(res / "features" / "i3d" / f"{vid}.npy"), recipe, ck["classes"],
                            manifest_duration(res / "media" / f"{vid}.json"), vid)
    assert [(e["start_s"], e["end_s"], e["label"]) for e in got["events"]] == [(s, e, c) for s, e, c, _ in want]
    np.testing.assert_allclose([e["score"] for e in got["events"]], [sc for *_, sc in want], rtol=1e-4)
    # the Snakemake route (`predict_with:`) on the same video gives the same events
    config = (work / "config.yaml").read_text()
    cfg = yaml.safe_load(config)
    cfg["datasets"]["new"] = {"videos": "one video", "recipe": "demo", "recipe_overrides": {"t_max": 16},
                              "predict_with": {"dataset": "tiny", "model": "mil"}}
    (work / "one video").mkdir()
    shutil.copy(work / "videos" / f"{vid}.mp4", work / "one video")
    try:
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        smk(work, "--cores", "2", "--workflow-profile", "none", f"results/new/predictions/mil/{vid}.json")
        wf = json.loads((work / "results" / "new" / "predictions" / "mil" / f"{vid}.json").read_text())
    finally:
        (work / "config.yaml").write_text(config)
        shutil.rmtree(work / "one video")
    assert [(e["start_s"], e["end_s"], e["label"]) for e in wf["events"]] == \
        [(e["start_s"], e["end_s"], e["label"]) for e in got["events"]]
    np.testing.assert_allclose([e["score"] for e in wf["events"]], [e["score"] for e in got["events"]], rtol=1e-4)
    assert wf["recipe"]["name"] == "demo" and got["events"], "an empty timeline would prove nothing"


def test_broken_video_reported_others_complete_no_partial_files(finished_run):
    work = finished_run
    rejected = (work / "logs" / "tiny" / "rejected_videos.tsv").read_text().splitlines()
    assert rejected[0] == "file\treason"
    assert len(rejected) == 2 and rejected[1].startswith("broken.mp4\t")
    assert not list((work / "results").rglob("broken*"))
    leftovers = [p for p in (work / "results").rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    assert (work / "results" / "tiny" / "features" / "i3d" / "it's a $clip ü.npy").exists()
    assert not (work / "results" / "tiny" / "flow").exists() or not list(
        (work / "results" / "tiny" / "flow").glob("*.npz")), "flow is temp() by default"


def test_incremental_reruns(finished_run, tiny_data):
    work = finished_run
    assert "Nothing to be done" in smk(work, "-n", "--workflow-profile", "none", "--cores", "1").stdout
    # a new video: only its per-video jobs plus the dataset-level jobs
    videos_src, _ = tiny_data
    src = sorted(videos_src.glob("*.mp4"))[1]
    shutil.copy(src, work / "videos" / "new video.mp4")
    try:
        counts = job_counts(smk(work, "-n", "--workflow-profile", "none", "--cores", "1").stdout)
        assert {k: counts.get(k) for k in ("media", "features_i3d")} == {"media": 1, "features_i3d": 1}
        assert counts["feature_store"] == counts["train"] == counts["evaluate"] == 1
    finally:
        (work / "videos" / "new video.mp4").unlink()
    # the device and the weights folder are no rerun trigger (common.smk `untracked`), though they are params
    moved = smk(work, "-n", "--workflow-profile", "none", "--cores", "1", "--config", "device=cpu",
                "weights_root=elsewhere/weights").stdout
    assert "Nothing to be done" in moved, moved[-2000:]
    # a recipe change (feature step) reruns every video's feature jobs but not the media stage
    write_config(work, work / "videos", work / "annotations.json", step=6)
    try:
        counts = job_counts(smk(work, "-n", "--workflow-profile", "none", "--cores", "1").stdout)
        assert counts.get("media") is None
        assert counts["features_i3d"] == 5
    finally:
        write_config(work, work / "videos", work / "annotations.json")


def _typo(cfg: dict, where: str, value) -> None:
    """Set ``cfg[a][b]...`` from a dotted path (the mistake under test)."""
    *parents, key = where.split(".")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    cfg[key] = value


@pytest.mark.parametrize("where, value, message", [
    ("datasetz", {}, "config: unknown key 'datasetz' (did you mean 'datasets'?); allowed: avvp, cluster_names, datasets, "
                     "device, extensions, extractor_modules, keep_flow, localizer_modules, weights_root"),
    ("datasets.tiny.epochs", 3, "datasets.tiny: unknown key 'epochs' (did you mean 'train.epochs'?); allowed: "),
    ("datasets.tiny.recipe", "unav101",
     "datasets.tiny.recipe: 'unav101' is not one of unav100, activitynet, demo (did you mean 'unav100'?)"),
    ("device", "gpu", "device: 'gpu' does not match '^(auto|cpu|cuda(:[0-9]+)?)$' (did you mean 'cpu'?)"),
    ("datasets.tiny.models", ["mil", "clsp"], "datasets.tiny.models.1: 'clsp' does not match "
                                              "'^(avel|ccnet|clasp|dave|mil)(-(weak|full))?$' (did you mean 'clasp'?)"),
    ("datasets.new.videos", None, "datasets.new.videos: None is not of type 'string'"),
    ("datasets.tiny.model_overrides.mil.epoch", 5,
     "datasets.tiny.model_overrides.mil: unknown key 'epoch' (did you mean 'epochs'?)"),
    ("datasets.tiny.model_overrides.claps", {"epochs": 5},
     "datasets.tiny.model_overrides.claps: unknown model 'claps' (did you mean 'clasp'?)"),
    ("datasets.new.predict_with.model", "mill",
     "datasets.new.predict_with.model: 'mill' is not a model of dataset 'tiny' (did you mean 'mil'?); "
     "its models: mil"),
    ("datasets.new.predict_with.dataset", "tiyn",
     "datasets.new.predict_with.dataset: unknown dataset 'tiyn' (did you mean 'tiny'?); datasets: new, tiny"),
    ("datasets.new.recipe_overrides", {"step": 6},
     "datasets.new.predict_with: recipe of 'new' differs from the recipe 'tiny' was trained with "
     "(step 6 vs 12); give 'new' recipe: 'demo' and the same recipe_overrides"),
    ("avvp.planted", {"planted": True, "ear": {"epoch": 2}},
     "avvp.planted.ear: unknown key 'epoch' (did you mean 'epochs'?)"),
])
def test_config_mistakes_fail_the_dry_run_naming_the_key(tmp_path, tiny_data, where, value, message):
    """Mistakes that used to pass validation and fail in the train or predict job after every video was
    extracted (or hide in a 261-line schema dump) stop the dry run with one line naming the key."""
    videos, annotations = tiny_data
    write_config(tmp_path, videos, annotations)
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["datasets"]["new"] = {"videos": str(videos), "recipe": "demo",
                              "recipe_overrides": {"t_max": 16}, "predict_with": {"dataset": "tiny", "model": "mil"}}
    _typo(cfg, where, value)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out, out[-3000:]
    assert "jsonschema" not in out and len(out.splitlines()) < 15, "one line, not a schema dump"


def test_missing_videos_folder_is_one_line_naming_the_key(tmp_path, tiny_data):
    """A videos folder that does not exist stops the dry run with the dataset's key, not a traceback out of
    the first input function that lists it."""
    _, annotations = tiny_data
    write_config(tmp_path, Path("data/my_vidoes"), annotations)
    proc = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "\ndatasets.tiny.videos: folder data/my_vidoes does not exist\n" in out, out[-3000:]
    assert "InputFunctionException" not in out and "FileNotFoundError" not in out and len(out.splitlines()) < 15


def test_unknown_dataset_in_a_target_lists_the_known_ones(tmp_path, tiny_data):
    videos, annotations = tiny_data
    write_config(tmp_path, videos, annotations)
    proc = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", "results/nonexistent/compare.md",
               check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert ("unknown dataset 'nonexistent' in a target (results/<dataset>/...); datasets in the config: tiny"
            in out), out[-3000:]
    assert "KeyError" not in out


def test_missing_weights_hint_is_a_target_that_works(tmp_path, tiny_data):
    """The missing-weights message suggests `snakemake fetch_all_weights --cores 1`: with a pretrained-weights
    recipe it dry-runs to one fetch job per checkpoint the recipe needs (RAFT, I3D RGB and flow, VGGish)."""
    from extractors.weight_registry import FETCH_HINT, REGISTRY

    videos, annotations = tiny_data
    write_config(tmp_path, videos, annotations, weights="pretrained", flow="raft")
    args = FETCH_HINT.split()[1:]
    out = smk(tmp_path, "-n", "--workflow-profile", "none", *args).stdout  # -n first: --configfile takes a list
    assert args[0] == "fetch_all_weights" and job_counts(out)["fetch_weights"] == 4, out[-2000:]
    for name in ("raft-sintel", "i3d_rgb", "i3d_flow", "vggish"):
        assert f"resources/weights/{REGISTRY[name].filename}" in out


def test_lint_is_clean(tmp_path):
    """`snakemake --lint` on the shipped config exits 0 with no finding (the device and weights folder reach
    the shell commands as untracked params: common.smk `untracked`; input functions live in common.smk)."""
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config.yaml")
    proc = smk(tmp_path, "--lint", "--workflow-profile", "none", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Lints for" not in out and "in a good condition" in out, out[-3000:]


def test_slurm_profile_dry_run_requests_gpus(tmp_path, tiny_data):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    videos, annotations = tiny_data
    write_config(tmp_path, videos, annotations)
    proc = smk(tmp_path, "--workflow-profile", str(REPO / "profiles" / "slurm"), "-n", "--printshellcmds")
    out = proc.stdout + proc.stderr
    # the SLURM profile's own default-resources (profiles/default is not read with --workflow-profile)
    assert "Using workflow specific profile" in out and "profiles/default" not in out
    assert re.search(r"rule feature_store:(?:\n\s+\S.*)*\n\s+resources: .*mem_mb=8000", out), out[-3000:]
    assert "Group job extract" in out, "per-video jobs are submitted in groups"
    blocks = [blk.strip() for blk in re.split(r"^(?=\s*rule \w+:$)", out, flags=re.M)]
    feature_jobs = [blk for blk in blocks if blk.startswith("rule features_i3d:")]
    assert feature_jobs and all("gpu=1" in blk for blk in feature_jobs)
    assert all("YOUR_GPU_PARTITION" in blk for blk in feature_jobs)
    media_jobs = [blk for blk in blocks if blk.startswith("rule media:")]
    assert media_jobs and all("gpu=1" not in blk for blk in media_jobs)
    assert all("YOUR_GPU_PARTITION" in blk for blk in media_jobs), "grouped with the GPU features jobs"


def test_slurm_profile_leaves_out_names_a_job_command_cannot_carry(tmp_path, tiny_data):
    """Under profiles/slurm (`cluster_names: true`) a name with both quote kinds or a comma is left out at
    discovery with its reason, so the dry run plans the others; without it (a workstation run) the same
    names are extracted."""
    videos, annotations = tiny_data
    folder = tmp_path / "videos"
    shutil.copytree(videos, folder)
    src = sorted(folder.glob("*.mp4"))[0]
    for bad in ("both ' and \"", "a,b"):
        shutil.copy(src, folder / f"{bad}.mp4")
    write_config(tmp_path, folder, annotations)
    proc = smk(tmp_path, "--workflow-profile", str(REPO / "profiles" / "slurm"), "-n")
    out = proc.stdout + proc.stderr
    assert job_counts(out)["features_i3d"] == 5, out[-2000:]
    assert "tiny: 2 videos left out before any job" in out
    rejected = {r["file"]: r["reason"] for r in read_tsv(tmp_path / "logs" / "tiny" / "rejected_videos.tsv")}
    assert rejected["a,b.mp4"].startswith("comma in the file name")
    assert "cannot be quoted in a cluster job's command" in rejected["both ' and \".mp4"]
    local = smk(tmp_path, "--workflow-profile", "none", "-n", "--cores", "1").stdout
    assert job_counts(local)["features_i3d"] == 7


def test_slurm_profile_groups_every_per_video_rule():
    """Every per-video extraction rule (UnAV media/features, LLP's and the dense data's per-clip features)
    is in the `extract` group, on the GPU partition: many small jobs per submission, networks loaded once."""
    prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    groups = dict(g.split("=") for g in prof["groups"])
    per_video = ("media", "features_i3d", "features_r21d", "llp_features", "avvp_dense_features")
    assert all(groups.get(r) == "extract" for r in per_video), groups
    assert all(prof["set-resources"][r]["slurm_partition"] == "YOUR_GPU_PARTITION" for r in per_video)


def test_llp_and_dense_features_one_job_per_clip_on_the_llp_worker_pool(tmp_path, tiny_data):
    """A benchmark whose LLP clips and stage-1 dense data both come from a UnAV-format dataset: one LLP and
    one dense feature job per video, each a per-clip command on the `llp` worker pool, and the consumers
    read the per-clip folders (a dry run)."""
    videos, annotations = tiny_data
    (tmp_path / "videos").symlink_to(videos)  # a folder inside the project, configured relative
    write_config(tmp_path, Path("videos"), annotations)
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["avvp"] = {"x": {"llp": {"from_dataset": "tiny", "visual": "clip", "audio": "clap", "weights": "random",
                                 "clip_model": "ViT-B-32"}, "dense_from": "tiny", "modes": ["pseudo"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", "--printshellcmds").stdout
    counts = job_counts(out)
    n = len(list(videos.glob("*.mp4")))
    assert counts["llp_features"] == counts["avvp_dense_features"] == n, counts
    shells = [line.strip() for line in out.splitlines() if "extractors.worker llp" in line]
    # relative clip paths as configured (absolute ones re-extracted a moved project), --video=PATH so an
    # id starting with '-' is not an option
    assert len(shells) == 2 * n and all("--entry extractors.llp.extract -- clip --video=videos/" in c
                                        or "--entry extractors.llp.extract -- clip --video='videos/" in c
                                        for c in shells), shells
    assert sum("--out results/avvp/x/dense_features/clips/" in c for c in shells) == n
    # the worker's own per-job resources, beside Snakemake's benchmark file (which measures the client)
    assert sum("--record benchmarks/avvp/x/dense_features/" in c for c in shells) == n
    assert sum("--record benchmarks/avvp/x/features/" in c for c in shells) == n
    assert "--features-dir results/avvp/x/dense_features/clips " in out
    assert "--features-dir results/avvp/x/features/clips " in out


def test_avvp_rules_one_job_per_stage(tmp_path, tiny_data):
    """EAR on the planted benchmark: data, stage 1 once, stage 2 for real and shuffled labels, stage 3 per
    mode (pseudo-label runs read stage 2's file, the video-label run does not), one summary page."""
    videos, annotations = tiny_data
    write_config(tmp_path, videos, annotations)
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["avvp"] = {"planted": {"planted": True, "modes": ["pseudo", "video", "shuffled"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", "--printshellcmds").stdout
    counts = job_counts(out)
    assert {k: counts.get(k) for k in ("avvp_planted", "ear_stage1", "ear_stage2", "ear_stage3", "avvp_summary")} \
        == {"avvp_planted": 1, "ear_stage1": 1, "ear_stage2": 2, "ear_stage3": 3, "avvp_summary": 1}
    stage3 = {m: line for line in out.splitlines() if "models.avvp.train stage3" in line
              for m in ("pseudo", "video", "shuffled") if f"results/avvp/planted/{m} " in line}
    assert "--pseudo results/avvp/planted/stage2/real/pseudo_labels.npz" in stage3["pseudo"]
    assert "--pseudo results/avvp/planted/stage2/shuffled/pseudo_labels.npz" in stage3["shuffled"]
    assert "--shuffle-labels" in stage3["shuffled"] and "--pseudo" not in stage3["video"]
    # a benchmark without data files is refused when the DAG is built, with the reason
    cfg["avvp"] = {"mine": {"modes": ["video"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    bad = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", check=False)
    assert bad.returncode != 0 and "avvp.mine: no `train` .npz configured" in bad.stdout + bad.stderr


def test_default_config_is_valid_and_its_model_overrides_exist():
    """The shipped demo config: schema-valid (snakemake validates it too) and every per-model override
    is a real field of that model's config, so `snakemake --cores all` cannot fail at training time."""
    import jsonschema

    from models.localizers.registry import make_config
    from models.run.pipeline import model_overrides

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    jsonschema.validate(cfg, schema)
    for ds in cfg["datasets"].values():
        for model in ds.get("models", []):
            name, sup = model_overrides(model)
            make_config(name, **{**ds.get("model_overrides", {}).get(model, {}), **sup})
    from models.avvp.ear import EARConfig
    from models.avvp.pseudo_labels import GeneratorConfig

    assert cfg["avvp"], "the demo runs EAR too"
    for spec in cfg["avvp"].values():
        GeneratorConfig(**spec.get("gen", {}))
        EARConfig(**spec.get("ear", {}))


def test_shipped_config_dry_run_from_a_fresh_directory(tmp_path):
    """`snakemake -n` with config/config.yaml where nothing exists yet (the demo data come from a
    checkpoint): the DAG builds, EAR's stages for both benchmarks are in it, and conflicting sources for
    a benchmark's data are refused with the reason."""
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config.yaml")
    out = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "2").stdout
    counts = job_counts(out)
    assert counts["demo_data"] == 2 and counts["ear_stage3"] == 6 and counts["avvp_summary"] == 2
    assert counts["ear_stage2"] == 4  # real and shuffled pseudo-labels of both benchmarks (their controls)
    assert counts["train"] == counts["evaluate"] == 3  # clasp, mil and CLASP's label-shuffled control
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["avvp"]["planted"]["dense_from"] = "demo"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    bad = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "2", check=False)
    assert bad.returncode != 0
    assert "avvp.planted: dense data from both planted and dense_from; keep one" in bad.stdout + bad.stderr


def write_llp_csvs(annotations: Path, out: Path) -> tuple[list[str], list[str], list[str]]:
    """LLP's CSVs for the demo clips (models.data.llp.unav_to_llp_csvs); the train, validation and
    test ids (validation clips go to ``AVVP_val_pd.csv``)."""
    from models.data.llp import unav_to_llp_csvs
    from models.data.unav import read_unav

    anns = read_unav(annotations)
    unav_to_llp_csvs(anns, out)
    return tuple([v for v, a in anns.items() if a.subset == s] for s in ("train", "validation", "test"))


def test_llp_raw_clips_to_ear_metrics(tmp_path, tiny_data):
    """Raw LLP-style clips (one of them corrupt) -> per-second R(2+1)D-18 + VGGish features and CLIP + CLAP
    generator features (random weights) -> train/test .npz from the CSVs -> EAR stages 1-3 with pseudo-labels
    and with video-level labels -> metrics + summary."""
    videos_src, annotations = tiny_data
    videos = tmp_path / "llp videos"
    shutil.copytree(videos_src, videos)
    (videos / "broken clip.mp4").write_bytes(b"not a video")
    train, val, test = write_llp_csvs(annotations, tmp_path / "csv")
    rng = np.random.default_rng(0)  # stage-1 data in the generator's spaces (CLAP 512, CLIP ViT-B/32 512)
    np.savez(tmp_path / "dense.npz", audio=rng.standard_normal((6, 10, 512)).astype(np.float32),
             visual=rng.standard_normal((6, 10, 512)).astype(np.float32),
             av_labels=(rng.random((6, 10, 3)) < 0.3).astype(np.float32),
             text_a=rng.standard_normal((3, 512)).astype(np.float32),
             text_v=rng.standard_normal((3, 512)).astype(np.float32))
    cfg = {"datasets": {}, "avvp": {"llp": {  # paths relative to the project folder (moved below)
        "llp": {"videos": "llp videos", "annotations": "csv", "visual": "r21d",
                "audio": "vggish", "weights": "random", "clip_model": "ViT-B-32"},
        "dense": "dense.npz", "modes": ["pseudo", "video"],
        "gen": {"epochs": 1, "warmup_epochs": 0, "batch_size": 3},
        "ear": {"d_model": 16, "n_heads": 2, "d_event": 4, "epochs": 2, "batch_size": 2, "warmup_epochs": 0}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    smk(tmp_path, "--cores", "2", "--workflow-profile", "none")
    with np.load(tmp_path / "data/avvp/llp/train.npz") as z:
        assert z["audio"].shape == (len(train), 10, 128) and z["visual"].shape == (len(train), 10, 512)
        assert z["gen_audio"].shape == z["gen_visual"].shape == (len(train), 10, 512)
        assert z["text_a"].shape == z["text_v"].shape == (z["labels"].shape[1], 512)
        assert [str(v) for v in z["video_ids"]] == train and "gt_a" not in z.files
        assert np.abs(z["visual"][:, 3:]).max() == 0  # 3 s clips: segments 3..9 are padding
        np.testing.assert_allclose(np.linalg.norm(z["gen_audio"][:, :3], axis=-1), 1.0, atol=1e-5)
    with np.load(tmp_path / "data/avvp/llp/test.npz") as z:
        assert z["gt_a"].shape == (len(test), z["labels"].shape[1], 10)
        np.testing.assert_array_equal(z["gt_a"].max(2), z["labels"])  # every labelled class has segments
    for mode in ("pseudo", "video"):
        metrics = json.loads((tmp_path / f"results/avvp/llp/{mode}/metrics.json").read_text())
        assert 0.0 <= metrics["test"]["seg_type"] <= 1.0 and metrics["mode"] == mode
    with np.load(tmp_path / "results/avvp/llp/stage2/real/pseudo_labels.npz") as z:
        labels = np.load(tmp_path / "data/avvp/llp/train.npz")["labels"]
        assert np.all(z["pseudo_a"] <= labels[:, None, :])  # filtered by the video-level labels
    rejected = (tmp_path / "logs/avvp/llp/rejected_videos.tsv").read_text()
    assert "broken clip.mp4" in rejected
    page = (tmp_path / "results/avvp/llp/summary.html").read_text()
    assert "WEIGHTS: RANDOM" in page
    clip_files = tmp_path / "results/avvp/llp/features/clips"  # one feature job and file pair per clip
    provs = {p.stem: json.loads(p.read_text()) for p in clip_files.glob("*.json")}
    assert sorted(provs) == sorted(p.stem for p in clip_files.glob("*.npz"))
    assert sorted(provs) == sorted(train + val + test)  # the val clips are extracted too
    prov = provs[train[0]]
    assert prov["weights"]["r21d"]["weights"] == "random" and prov["has_audio"] is True
    assert prov["weights"]["clap"]["weights"]["weights"] == "random"
    with np.load(tmp_path / "data/avvp/llp/train.npz") as z:  # 3 s clips: segments 3..9 are not video
        assert z["mask"][:, :3].all() and not z["mask"][:, 3:].any()
    pred = json.loads((tmp_path / "results/avvp/llp/video/predictions.json").read_text())
    assert all(e[1] <= 3 for v in pred["videos"].values() for evs in v.values() for e in evs)
    with np.load(tmp_path / "results/avvp/llp/stage2/real/pseudo_labels.npz") as z:
        assert not z["pseudo_a"][:, 3:].any() and not z["pseudo_v"][:, 3:].any()
    # the finished project copied to another folder (timestamps and .snakemake kept) has nothing to do:
    # no input path depends on where the project lives (LLP's 11,849 clips were re-extracted when they did)
    moved = tmp_path.parent / f"{tmp_path.name} moved"
    shutil.copytree(tmp_path, moved, symlinks=True)
    try:
        assert "Nothing to be done" in smk(moved, "-n", "--workflow-profile", "none", "--cores", "2").stdout
    finally:
        shutil.rmtree(moved)
    # two new clips in the train CSV cost their own two feature jobs, none of the others' (plus the jobs
    # downstream of the CSV and the new features: text, splits, EAR's stages)
    for i, src in enumerate(sorted(videos_src.glob("*.mp4"))[:2]):
        shutil.copy(src, videos / f"-new clip {i}.mp4")  # LLP's YouTube ids may start with '-'
    csv = tmp_path / "csv" / "AVVP_train.csv"
    label = csv.read_text().splitlines()[1].split("\t")[1]
    csv.write_text(csv.read_text() + "".join(f"-new clip {i}\t{label}\n" for i in range(2)))
    dry = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "2").stdout
    extracted = sorted(re.findall(r"^\s*wildcards: llp=llp, vid=(.+)$", dry, flags=re.M))
    assert job_counts(dry)["llp_features"] == 2 and extracted == ["-new clip 0", "-new clip 1"], dry[-3000:]
    assert job_counts(dry)["llp_split"] >= 1 and job_counts(dry)["ear_stage3"] == 2
