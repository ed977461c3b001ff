"""The SLURM profile at benchmark scale, through the real SLURM executor plugin and fake SLURM commands:
1,000 videos must become 25 grouped submissions (40 videos each), each asking for one GPU once, not
2,000 per-video submissions. The fake ``sbatch`` records every call and submits nothing; the fake
``sacct`` reports every job as failed, so the run stops after the first wave of submissions (the
grouped per-video work: nothing else is ready before it)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from extractors.synthetic_videos import make_demo_dataset

REPO = Path(__file__).resolve().parents[1]
N_VIDEOS = 1000
PER_SUBMISSION = 40

FAKE = {
    # sbatch: log the call (one line per submission), print a job id (--parsable)
    "sbatch": """#!/bin/sh
n=$(wc -l < "$FAKE_SLURM_LOG" 2>/dev/null || echo 0)
echo "$*" >> "$FAKE_SLURM_LOG"
echo $((1000 + n))
""",
    # sacct: every submitted job has failed
    "sacct": """#!/bin/sh
i=0
while read -r line; do echo "$((1000 + i))|FAILED"; i=$((i + 1)); done < "$FAKE_SLURM_LOG"
""",
    "squeue": "#!/bin/sh\nexit 0\n",
    "sinfo": "#!/bin/sh\nexit 0\n",
    "scontrol": "#!/bin/sh\nexit 0\n",
    "sacctmgr": "#!/bin/sh\necho YOUR_ACCOUNT\n",
    "sshare": "#!/bin/sh\necho YOUR_ACCOUNT\n",
}


@pytest.fixture(scope="module")
def thousand_videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slurm")
    make_demo_dataset(root / "clip", n_videos=1, duration_s=2.0, seed=0)
    clip = next((root / "clip" / "videos").glob("*.mp4"))
    videos = root / "videos"
    videos.mkdir()
    for i in range(N_VIDEOS):
        os.symlink(clip, videos / f"v{i:04d}.mp4")
    db = {f"v{i:04d}": {"subset": ("train", "validation", "test")[i % 3], "duration": 2.0,
                        "annotations": [{"segment": [0.2, 1.5], "label": "tone", "label_id": 0}]}
          for i in range(N_VIDEOS)}
    (root / "annotations.json").write_text(json.dumps({"database": db}))
    return root


def test_thousand_videos_are_25_grouped_gpu_submissions(thousand_videos: Path, tmp_path: Path) -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "sbatch.log"
    log.touch()
    cfg = {"datasets": {"big": {"videos": str(thousand_videos / "videos"), "recipe": "demo",
                                "annotations": str(thousand_videos / "annotations.json"),
                                "models": ["mil"], "train": {"epochs": 1}}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_LOG": str(log)}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--workflow-profile", str(REPO / "profiles" / "slurm"),
           "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "0", "--retries", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    calls = log.read_text().splitlines()
    assert proc.returncode != 0, "the fake sacct fails every job"
    assert len(calls) == N_VIDEOS // PER_SUBMISSION, (
        f"{len(calls)} submissions for {N_VIDEOS} videos\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    for call in calls:
        gpu_flags = re.findall(r"--gpus[= ]\S+|--gres[= ]\S*gpu\S*", call)
        assert len(gpu_flags) == 1 and gpu_flags[0].endswith("1"), call
        assert "YOUR_GPU_PARTITION" in call and "YOUR_CPU_PARTITION" not in call, call
