"""Issue 26 through the workflow: a video that passes discovery and fails in its own media job (a truncated
fast-start mp4) is a recorded result, so the store, training, evaluation and summary are built for the
others and the failure is counted; awkward names (braces, a tab, a dangling symlink) are listed as
rejected without breaking the DAG; deleting the failure record retries the video."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from extractors.discovery import read_rejections, read_tsv
from extractors.ffmpeg import ffmpeg_exe
from extractors.synthetic_videos import make_demo_dataset
from tests.test_workflow import job_counts, smk, write_config


@pytest.fixture(scope="module")
def run_with_a_bad_video(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("inputs_data")
    make_demo_dataset(root, n_videos=5, duration_s=3.0, seed=2, n_val=1, n_test=2)
    work = tmp_path_factory.mktemp("inputs_work")
    videos = work / "videos"
    shutil.copytree(root / "videos", videos)
    ann = json.loads((root / "annotations.json").read_text())
    (work / "annotations.json").write_text(json.dumps(ann))
    # the bad one: an annotated test video, moov moved to the front and the file cut: it demuxes (discovery
    # admits it) but decodes to too few frames (its media job fails on its own content)
    bad = next(v for v, a in sorted(ann["database"].items()) if a["subset"] == "test")
    fast = work / "fast.mp4"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", f"file:{videos / bad}.mp4", "-c",
                    "copy", "-movflags", "+faststart", f"file:{fast}"], check=True)
    data = fast.read_bytes()
    (videos / f"{bad}.mp4").write_bytes(data[: len(data) * 2 // 5])
    good = videos / f"{next(v for v in sorted(ann['database']) if v != bad)}.mp4"
    (videos / "brace{vid}.mp4").write_bytes(good.read_bytes())
    (videos / "tab\tname.mp4").write_bytes(good.read_bytes())
    (videos / "dangling.mp4").symlink_to(work / "gone.mp4")
    # a 6 s video whose audio track lasts 1.3 s (not annotated: it is in the store, not in a split)
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=s=64x48:r=25:d=6", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000:d=1.3",
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    f"file:{videos / 'short_audio.mp4'}"], check=True)
    write_config(work, videos, work / "annotations.json")
    new = work / "new_videos"  # new videos, one of them the truncated one, predicted with the trained model
    new.mkdir()
    shutil.copy(videos / f"{bad}.mp4", new / "cut.mp4")
    shutil.copy(good, new / "fine.mp4")
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["datasets"]["new"] = {"videos": str(new), "recipe": "demo", "recipe_overrides": {"t_max": 16},
                              "predict_with": {"dataset": "tiny", "model": "mil"}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    smk(work, "--cores", "2", "--workflow-profile", "none", "--resources", "gpu=1")  # no --keep-going
    return work, bad


def test_a_failed_video_is_counted_and_the_dataset_finishes(run_with_a_bad_video):
    work, bad = run_with_a_bad_video
    res = work / "results" / "tiny"
    record = json.loads((res / "media" / f"{bad}.json").read_text())
    assert record["stage"] == "media" and "truncated or corrupt video: decoded" in record["failed"]
    for kind in ("i3d", "vggish"):
        assert json.loads((res / "features" / kind / f"{bad}.json").read_text())["failed"] == record["failed"]
    index = json.loads((res / "store" / "index.json").read_text())
    assert bad not in index["video_ids"] and len(index["video_ids"]) == 5
    assert index["meta"]["failed"] == {bad: {"failed": record["failed"], "stage": "media"}}
    rows = read_tsv(work / "logs" / "tiny" / "failed_videos.tsv")
    assert rows == [{"video": bad, "stage": "media", "reason": record["failed"]}]
    metrics = json.loads((res / "models" / "mil" / "metrics.json").read_text())
    assert metrics["n_videos_failed_extraction"] == 1 and bad in metrics["videos_failed_extraction"]
    assert metrics["n_videos_without_features"] >= 1
    html = (res / "summary.html").read_text()
    assert "<h2>Failed videos</h2>" in html and f"<td>{bad}</td><td>media</td>" in html


def test_awkward_names_are_rejected_with_reasons(run_with_a_bad_video):
    work, _ = run_with_a_bad_video
    rejected = {r["file"]: r["reason"] for r in read_rejections(work / "logs" / "tiny" / "rejected_videos.tsv")}
    assert set(rejected) == {"brace{vid}.mp4", "tab\tname.mp4", "dangling.mp4"}
    assert "Snakemake wildcard" in rejected["brace{vid}.mp4"]
    assert "control character" in rejected["tab\tname.mp4"]
    assert rejected["dangling.mp4"].startswith("dangling symlink")


def test_deleting_the_record_retries_the_video(run_with_a_bad_video):
    work, bad = run_with_a_bad_video
    dry = smk(work, "-n", "--workflow-profile", "none", "--cores", "1")
    assert job_counts(dry.stdout) == {}
    # the rejected names are on the console too, once (the main process), before any job
    assert dry.stderr.count("tiny: 3 videos left out before any job (all in logs/tiny/rejected_videos.tsv):") == 1
    assert "  'brace{vid}.mp4': braces { } in the file name" in dry.stderr
    record = work / "results" / "tiny" / "features" / "i3d" / "short_audio.json"  # a features job's record
    kept = record.read_bytes()
    record.unlink()
    counts = job_counts(smk(work, "-n", "--workflow-profile", "none", "--cores", "1").stdout)
    assert counts.get("media") is None and counts["features_i3d"] == 1
    record.write_bytes(kept)
    (work / "results" / "tiny" / "media" / f"{bad}.json").unlink()  # the media job's failure record
    counts = job_counts(smk(work, "-n", "--workflow-profile", "none", "--cores", "1").stdout)
    assert counts["media"] == 1 and counts["features_i3d"] == 1 and counts["feature_store"] == 1


def test_audio_shorter_than_the_video_keeps_every_visual_step(run_with_a_bad_video):
    work, _ = run_with_a_bad_video
    res = work / "results" / "tiny"
    manifest = json.loads((res / "media" / "short_audio.json").read_text())
    assert manifest["has_audio"] and manifest["audio_padded_s"] == pytest.approx(4.7, abs=0.05)
    visual = np.load(res / "features" / "i3d" / "short_audio.npy")
    assert visual.shape[0] == (75 - 13) // 12 + 1  # demo recipe: 6 s at 12.5 FPS, 12-frame windows, step 12
    audio_prov = json.loads((res / "features" / "vggish" / "short_audio.json").read_text())
    assert audio_prov["audio_padded_s"] == manifest["audio_padded_s"] and audio_prov["T"] >= visual.shape[0]
    index = json.loads((res / "store" / "index.json").read_text())
    assert index["lengths"][index["video_ids"].index("short_audio")] == visual.shape[0]


def test_prediction_of_a_failed_video_is_a_record(run_with_a_bad_video):
    work, _ = run_with_a_bad_video
    pred = work / "results" / "new" / "predictions" / "mil"
    cut = json.loads((pred / "cut.json").read_text())
    assert cut["events"] == [] and cut["stage"] == "media" and "truncated or corrupt video" in cut["failed"]
    fine = json.loads((pred / "fine.json").read_text())
    assert "failed" not in fine and fine["duration"] > 2.9
    html = (work / "results" / "new" / "summary.html").read_text()
    assert "<td>cut</td><td>media</td>" in html
