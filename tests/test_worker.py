"""Resident extraction workers (extractors/worker.py): jobs of one pool share a worker that keeps its
networks loaded, each job's output lands in that job's own log, a failing job fails alone (and the
worker is replaced), idle workers exit, and AVLOC_WORKER=0 runs the job in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from extractors.recipes import get_recipe
from extractors.synthetic_videos import make_demo_dataset


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("worker_clips")
    make_demo_dataset(root, n_videos=2, duration_s=2.0, seed=3)
    return sorted((root / "videos").glob("*.mp4"))


@pytest.fixture()
def worker_env(tmp_path: Path):
    short = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))  # sockets need a short path
    env = {**os.environ, "AVLOC_WORKER_DIR": str(short), "AVLOC_WORKER_IDLE_S": "2", "OMP_NUM_THREADS": "1"}
    yield env, short
    deadline = time.time() + 10  # let the idle workers exit before the folder goes
    while list(short.glob("*.sock")) and time.time() < deadline:
        time.sleep(0.2)


def job(env: dict[str, str], cwd: Path, log: Path, pool: str, *args: str, entry: str | None = None) -> int:
    with open(log, "w") as fh:
        head = [pool, "--threads", "1", *(["--entry", entry] if entry else [])]
        return subprocess.run([sys.executable, "-m", "extractors.worker", *head, "--", *args],
                              stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd).returncode


def media_args(src: Path, out: Path) -> list[str]:
    return ["media", "--src", str(src), "--mp4", str(out / f"{src.stem}.mp4"), "--wav", str(out / f"{src.stem}.wav"),
            "--fps", "25"]


def features_args(vid: str, out: Path) -> list[str]:
    recipe = json.dumps(get_recipe("demo").to_dict())
    return ["features", "--visual", "i3d", "--mp4", f"media/{vid}.mp4", "--wav", f"media/{vid}.wav",
            "--out-visual", f"feat/i3d/{vid}.npy", "--out-audio", f"feat/vggish/{vid}.npy",
            "--recipe-json", recipe, "--device", "cpu"]


def test_jobs_share_a_resident_worker_and_log_to_their_own_files(clips, worker_env, tmp_path):
    env, wdir = worker_env
    for clip in clips:
        assert job(env, tmp_path, tmp_path / f"{clip.stem}.media.log", "media", *media_args(clip, tmp_path / "media")) == 0
    for clip in clips:
        assert job(env, tmp_path, tmp_path / f"{clip.stem}.features.log", "features",
                   *features_args(clip.stem, tmp_path)) == 0
    for clip in clips:  # each job's own messages, and only its own, in its log
        text = (tmp_path / f"{clip.stem}.media.log").read_text()
        assert f"{clip.stem}.mp4 -> " in text and all(f"{c.stem}.mp4 -> " not in text for c in clips if c != clip)
        x = np.load(tmp_path / "feat" / "i3d" / f"{clip.stem}.npy")
        assert x.shape[1] == 2048 and np.load(tmp_path / "feat" / "vggish" / f"{clip.stem}.npy").shape[1] == 128
    first, second = ((tmp_path / f"{c.stem}.features.log").read_text() for c in clips)
    assert "network i3d/rgb" in first and "network vggish" in first, first
    assert "network" not in second, "the second video reuses the first one's networks"
    starts = [p for p in wdir.glob("*.log") if "listening" in p.read_text()]
    assert len(starts) == 2, "one worker for the media pool, one for the features pool"
    assert all(p.read_text().count("listening") == 1 for p in starts)


def test_llp_clip_jobs_share_a_worker_and_a_bad_clip_is_recorded(clips, worker_env, tmp_path):
    """LLP's per-clip jobs (``--entry extractors.llp.extract -- clip ...``) on the `llp` pool: the second good clip builds no network
    again, although a clip that cannot be decoded ran in between (recorded with `failed`, the job succeeds
    and the worker stays)."""
    env, wdir = worker_env
    bad = tmp_path / "bad clip.mp4"
    bad.write_text("this is not a video\n")
    order = [clips[0], bad, clips[1]]
    for video in order:
        assert job(env, tmp_path, tmp_path / f"{video.stem}.log", "llp", "clip", "--video", str(video),
                   "--out", f"clips/{video.stem}.npz", "--kinds", "r21d,vggish", "--weights", "random",
                   "--device", "cpu", entry="extractors.llp.extract") == 0, (tmp_path / f"{video.stem}.log").read_text()
    first, failed, second = ((tmp_path / f"{v.stem}.log").read_text() for v in order)
    assert "build_r2plus1d_18" in first and "network vggish" in first, first
    assert "network" not in second, "the second clip reuses the first one's networks"
    assert json.loads((tmp_path / "clips" / "bad clip.json").read_text())["failed"] and "bad clip" in failed
    assert np.load(tmp_path / "clips" / f"{clips[1].stem}.npz")["r21d"].shape == (2, 512)
    logs = list(wdir.glob("*-llp-0.log"))
    assert len(logs) == 1 and logs[0].read_text().count("listening") == 1, "one worker served all three"


def test_a_failing_job_fails_alone_and_the_worker_is_replaced(clips, worker_env, tmp_path):
    env, wdir = worker_env
    bad = tmp_path / "not a video.mp4"
    bad.write_text("this is not a video\n")
    assert job(env, tmp_path, tmp_path / "bad.log", "media", *media_args(bad, tmp_path / "out")) != 0
    assert "not a video" in (tmp_path / "bad.log").read_text() and "MediaError" in (tmp_path / "bad.log").read_text()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "no partial outputs"
    log = next(wdir.glob("*-media-0.log"))
    deadline = time.time() + 10  # the worker notes its exit just after replying
    while "exiting" not in log.read_text() and time.time() < deadline:
        time.sleep(0.1)
    assert "failed" in log.read_text() and "exiting" in log.read_text()
    assert job(env, tmp_path, tmp_path / "good.log", "media", *media_args(clips[0], tmp_path / "out")) == 0
    assert (tmp_path / "out" / f"{clips[0].stem}.wav").exists()
    assert next(wdir.glob("*-media-0.log")).read_text().count("listening") == 2


def test_idle_worker_exits_and_switch_off_runs_in_process(clips, worker_env, tmp_path):
    env, wdir = worker_env
    assert job(env, tmp_path, tmp_path / "a.log", "media", *media_args(clips[0], tmp_path / "o")) == 0
    assert list(wdir.glob("*.sock"))
    deadline = time.time() + 15
    while list(wdir.glob("*.sock")) and time.time() < deadline:
        time.sleep(0.2)
    assert not list(wdir.glob("*.sock")), "idle worker exited and removed its socket"
    env_off = {**env, "AVLOC_WORKER": "0"}
    before = sorted(wdir.glob("*.log"))
    assert job(env_off, tmp_path, tmp_path / "b.log", "media", *media_args(clips[1], tmp_path / "o")) == 0
    assert f"{clips[1].stem}.mp4 -> " in (tmp_path / "b.log").read_text()
    assert sorted(wdir.glob("*.log")) == before, "no worker was started"


def test_client_refuses_missing_separator(worker_env, tmp_path):
    env, _ = worker_env
    proc = subprocess.run([sys.executable, "-m", "extractors.worker", "media", "media"], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "missing '--' before the extraction arguments" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "extractors.worker", "media", "--entry", "os", "--", "x"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "entry 'os' is not a module of the extractors package" in proc.stderr


def test_media_pool_runs_without_torch(clips, worker_env, tmp_path):
    """envs/media.yaml has no torch: the media job, on a resident worker and in-process, never imports it
    (a ``torch`` package that raises on import is first on the path; the project comes from this tree)."""
    env, _ = worker_env
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is not in the media environment')\n")
    root = Path(__file__).resolve().parents[1]
    env = {**env, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(root)])}
    assert job(env, tmp_path, tmp_path / "a.log", "media", *media_args(clips[0], tmp_path / "o")) == 0, \
        (tmp_path / "a.log").read_text()
    env_off = {**env, "AVLOC_WORKER": "0"}
    assert job(env_off, tmp_path, tmp_path / "b.log", "media", *media_args(clips[1], tmp_path / "o")) == 0, \
        (tmp_path / "b.log").read_text()
    assert (tmp_path / "o" / f"{clips[1].stem}.wav").exists()
