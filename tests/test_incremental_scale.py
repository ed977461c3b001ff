"""Incremental reruns at dataset scale: on a 200-video dataset whose per-video outputs all exist, adding
2 videos makes the dry run list media and feature extraction for exactly those 2 (plus the
dataset-level jobs), and a video's outputs are never recomputed because another video arrived."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from extractors.synthetic_videos import make_demo_dataset

REPO = Path(__file__).resolve().parents[1]


def dry_run(work: Path) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile",
           str(work / "config.yaml"), "--workflow-profile", "none", "--cores", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def per_video_jobs(out: str) -> dict[str, set[str]]:
    """{rule: {video ids}} of the per-video jobs of a dry run."""
    jobs: dict[str, set[str]] = {}
    for block in re.split(r"^(?=rule \w+:$)", out, flags=re.M):
        rule = re.match(r"rule (\w+):", block)
        vid = re.search(r"^\s*wildcards: ds=\w+, vid=(.+)$", block, re.M)
        if rule and vid:
            jobs.setdefault(rule.group(1), set()).add(vid.group(1).strip())
    return jobs


def test_two_new_videos_in_a_200_video_dataset_extract_only_those_two(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path / "clip", n_videos=1, duration_s=2.0, seed=0)
    clip = next((tmp_path / "clip" / "videos").glob("*.mp4"))
    videos = tmp_path / "videos"
    videos.mkdir()
    ids = [f"v{i:03d}" for i in range(200)]
    past = time.time() - 100
    for vid in ids:
        os.symlink(clip, videos / f"{vid}.mp4")
        os.utime(videos / f"{vid}.mp4", (past, past), follow_symlinks=False)
    os.utime(clip, (past, past))
    db = {vid: {"subset": ("train", "validation", "test")[i % 3], "duration": 2.0,
                "annotations": [{"segment": [0.2, 1.5], "label": "tone", "label_id": 0}]}
          for i, vid in enumerate([*ids, "new one", "new two"])}
    (tmp_path / "annotations.json").write_text(json.dumps({"database": db}))
    cfg = {"datasets": {"big": {"videos": str(videos), "recipe": "demo", "annotations": str(tmp_path / "annotations.json"),
                                "models": ["mil"], "train": {"epochs": 1}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert {r: len(v) for r, v in per_video_jobs(dry_run(tmp_path)).items()} == {"media": 200, "features_i3d": 200}
    # every per-video output exists (as after a finished run), newer than its inputs
    res = tmp_path / "results" / "big"
    now = time.time()
    for vid in ids:
        for path, age in [(res / "media" / f"{vid}.{ext}", 20) for ext in ("mp4", "wav", "json")] + \
                         [(res / "features" / kind / f"{vid}.{ext}", 10) for kind in ("i3d", "vggish")
                          for ext in ("npy", "json")]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, (now - age, now - age))
    out = dry_run(tmp_path)
    assert per_video_jobs(out) == {}, "nothing per video left to do"
    for name in ("new one", "new two"):
        os.symlink(clip, videos / f"{name}.mp4")
    out = dry_run(tmp_path)
    assert per_video_jobs(out) == {"media": {"new one", "new two"}, "features_i3d": {"new one", "new two"}}
    assert "rule feature_store:" in out and "rule train:" in out  # the dataset-level jobs follow the new set
