"""Issue 26 (every input): a video that fails on its own content is a recorded result (failure record), an
environment fault is not; the recipe's true minimum length; audio shorter than the video is padded."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import extractors.extract as extract
import extractors.ffmpeg as ffmpeg_runner
import extractors.media as media
from extractors import discovery
from extractors.errors import ContentError
from extractors.ffmpeg import ffmpeg_exe
from extractors.frames import num_windows
from extractors.media import normalize
from extractors.recipes import VGGISH_MIN_S, get_recipe
from extractors.synthetic_videos import make_clip
from extractors.vggish import num_examples, read_wav_16k_mono


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    good = make_clip(d / "good.mp4", size=(64, 48), fps=25, duration_s=2.0)
    data = good.read_bytes()  # libx264 + mp4 muxer put moov at the end: move it to the front (fast start)
    fast = d / "fast.mp4"
    ffmpeg("-i", f"file:{good}", "-c", "copy", "-movflags", "+faststart", f"file:{fast}")
    data = fast.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) * 2 // 5])  # index intact, 60 % of the frames gone
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=6", "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000:d=1.3",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", f"file:{d / 'short_audio.mp4'}")
    make_clip(d / "s097.mp4", size=(64, 48), fps=100, duration_s=0.97)
    make_clip(d / "s100.mp4", size=(64, 48), fps=25, duration_s=1.0)
    return {p.stem: p for p in d.glob("*.mp4")}


def outputs(tmp: Path, vid: str) -> dict[str, Path]:
    return {"mp4": tmp / "media" / f"{vid}.mp4", "wav": tmp / "media" / f"{vid}.wav"}


# --------------------------------------------------------------------------------- failure records
def test_truncated_video_passes_discovery_and_its_media_job_records_the_failure(clips, tmp_path):
    assert discovery._probe_reason(clips["truncated"], 0.96) is None  # admitted: only a decode finds it
    o = outputs(tmp_path, "truncated")
    assert extract.main(["media", "--src", str(clips["truncated"]), "--mp4", str(o["mp4"]), "--wav", str(o["wav"]),
                         "--fps", "25"]) == 0
    record = json.loads(o["mp4"].with_suffix(".json").read_text())
    assert record["stage"] == "media" and record["input"] == str(clips["truncated"])
    assert record["failed"].startswith(f"MediaError: {clips['truncated']}: truncated or corrupt video: decoded ")
    assert o["mp4"].stat().st_size == 0 and o["wav"].stat().st_size == 0
    assert extract.read_failure(o["mp4"].with_suffix(".json")) == {"failed": record["failed"], "stage": "media"}
    assert sorted(p.name for p in o["mp4"].parent.iterdir()) == ["truncated.json", "truncated.mp4", "truncated.wav"]

    # the features job passes the media record on without touching a network
    feat = tmp_path / "features"
    reason = extract.features_job(mp4=o["mp4"], wav=o["wav"], visual="i3d", out_visual=feat / "i3d" / "truncated.npy",
                                  out_audio=feat / "vggish" / "truncated.npy", recipe=get_recipe("demo"),
                                  weights_root=tmp_path / "no-weights", device="cpu", batch_size=2)
    assert reason == record["failed"]
    for kind in ("i3d", "vggish"):
        assert extract.read_failure(feat / kind / "truncated.json") == {"failed": reason, "stage": "media"}
        assert np.load(feat / kind / "truncated.npy").shape == (0, 0)


def test_content_error_in_features_is_recorded_other_errors_propagate(clips, tmp_path, monkeypatch):
    o = outputs(tmp_path, "good")
    normalize(clips["good"], o["mp4"], o["wav"], fps=12.5)
    feat = tmp_path / "features"
    kw = dict(mp4=o["mp4"], wav=o["wav"], visual="i3d", out_visual=feat / "i3d" / "good.npy",
              out_audio=feat / "vggish" / "good.npy", recipe=get_recipe("demo"), weights_root=tmp_path, device="cpu",
              batch_size=2)

    def content(**_):
        raise ContentError(o["mp4"], "no frames decoded")

    monkeypatch.setattr(extract, "run_features", content)
    assert extract.features_job(**kw) == f"ContentError: {o['mp4']}: no frames decoded"
    assert extract.read_failure(feat / "i3d" / "good.json")["stage"] == "features"

    for p in feat.rglob("*"):
        if p.is_file():
            p.unlink()

    def full_disk(**_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(extract, "run_features", full_disk)
    with pytest.raises(OSError, match="No space left"):
        extract.features_job(**kw)
    assert [p for p in feat.rglob("*") if p.is_file()] == []


def test_environment_errors_are_not_recorded_as_bad_inputs(clips, tmp_path, monkeypatch):
    """ENOSPC while writing (Python or ffmpeg) fails the media job loudly: no record, nothing published."""
    o = outputs(tmp_path, "good")

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(media, "write_wav", full_disk)
    with pytest.raises(OSError) as ei:
        extract.main(["media", "--src", str(clips["good"]), "--mp4", str(o["mp4"]), "--wav", str(o["wav"])])
    assert ei.value.errno == errno.ENOSPC and not isinstance(ei.value, ContentError)
    assert not o["mp4"].parent.exists() or list(o["mp4"].parent.iterdir()) == []
    monkeypatch.undo()

    def ffmpeg_full(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, b"", b"[out#0/mp4] Error writing trailer: No space left on device\n")

    monkeypatch.setattr(ffmpeg_runner.subprocess, "run", ffmpeg_full)
    with pytest.raises(OSError, match="No space left on device") as ei:
        extract.media_job(clips["good"], o["mp4"], o["wav"], fps=25.0)
    assert ei.value.errno == errno.ENOSPC and not isinstance(ei.value, ContentError)
    assert not o["mp4"].with_suffix(".json").exists()


@pytest.mark.parametrize("rc,stderr", [(-9, b""), (255, b"Exiting normally, received signal 15.\n")])
def test_a_stopped_ffmpeg_is_not_recorded_as_a_bad_input(clips, tmp_path, monkeypatch, rc, stderr):
    """ffmpeg killed (a cancelled job, the OOM killer) or stopping on a signal: the job fails, no record."""
    o = outputs(tmp_path, "good")
    monkeypatch.setattr(ffmpeg_runner.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, rc, b"", stderr))
    with pytest.raises(InterruptedError, match="was stopped by") as ei:
        extract.media_job(clips["good"], o["mp4"], o["wav"], fps=25.0)
    assert not isinstance(ei.value, ContentError)
    assert not o["mp4"].with_suffix(".json").exists()


def test_worker_client_exits_0_only_after_publishing(clips, tmp_path):
    """Through the resident worker: a bad video's job exits 0 with its record published; a job that meets an
    environment fault (its output folder cannot be made) exits non-zero and publishes nothing."""
    short = Path(tempfile.mkdtemp(prefix="w", dir="/tmp"))
    env = {**os.environ, "AVLOC_WORKER_DIR": str(short), "AVLOC_WORKER_IDLE_S": "2", "OMP_NUM_THREADS": "1"}

    def job(src: Path, out: Path, cwd: Path = tmp_path) -> int:
        return subprocess.run([sys.executable, "-m", "extractors.worker", "media", "--", "media", "--src", str(src),
                               "--mp4", str(out / f"{src.stem}.mp4"), "--wav", str(out / f"{src.stem}.wav")],
                              env=env, cwd=cwd, capture_output=True).returncode

    try:
        # the worker starts in the first job's folder; that folder going away must not fail the next job
        first = tmp_path / "first"
        first.mkdir()
        assert job(clips["good"], tmp_path / "media", cwd=first) == 0
        first.rmdir()
        assert job(clips["truncated"], tmp_path / "media") == 0
        assert extract.read_failure(tmp_path / "media" / "truncated.json")["stage"] == "media"
        (tmp_path / "blocker").write_text("a file where the output folder should be\n")
        assert job(clips["good"], tmp_path / "blocker" / "media") != 0
        assert not (tmp_path / "blocker" / "media").exists()
    finally:
        deadline = time.time() + 10
        while list(short.glob("*.sock")) and time.time() < deadline:
            time.sleep(0.2)


# -------------------------------------------------------------------------------------------- lengths
def test_minimum_duration_comes_from_the_recipe():
    unav, demo, anet = get_recipe("unav100"), get_recipe("demo"), get_recipe("activitynet")
    assert VGGISH_MIN_S == pytest.approx(0.975)
    assert unav.min_duration_s == pytest.approx(25 / 25)  # stack + 1 frames at 25 FPS
    assert demo.min_duration_s == pytest.approx(13 / 12.5)
    assert anet.min_duration_s == pytest.approx(1.0)  # R(2+1)D: 16 frames at 16 FPS
    assert get_recipe("unav100", fps=50.0).min_duration_s == pytest.approx(VGGISH_MIN_S)  # audio decides


def test_097s_clip_is_rejected_and_a_clip_at_the_minimum_gives_one_step(clips, tmp_path):
    r = get_recipe("unav100")
    reason = discovery._probe_reason(clips["s097"], r.min_duration_s)
    assert reason == "clip too short: 0.970 s is below the 1 s minimum (one feature window)"
    assert discovery._probe_reason(clips["s100"], r.min_duration_s) is None
    m = normalize(clips["s100"], tmp_path / "a.mp4", tmp_path / "a.wav", fps=r.fps, min_duration_s=r.min_duration_s)
    wav = read_wav_16k_mono(tmp_path / "a.wav")
    assert num_windows(m.n_frames, r.min_frames, r.step) >= 1
    assert num_examples(len(wav), r.audio_hop_s) >= 1


@pytest.mark.parametrize("mode", ["pad", "cut"])
def test_audio_shorter_than_the_video(clips, tmp_path, mode):
    r = get_recipe("unav100")
    m = normalize(clips["short_audio"], tmp_path / "a.mp4", tmp_path / "a.wav", fps=r.fps, short_audio=mode)
    wav = read_wav_16k_mono(tmp_path / "a.wav")
    visual_steps = num_windows(m.n_frames, r.min_frames, r.step)
    assert m.n_frames == 150 and visual_steps == 16
    assert m.has_audio
    if mode == "pad":
        assert len(wav) == 6 * 16000 and m.audio_padded_s == pytest.approx(4.7, abs=0.05)
        assert np.all(wav[int(1.4 * 16000):] == 0) and np.abs(wav[: 16000]).max() > 0.1
        assert any(f"padded with {m.audio_padded_s:.2f} s of silence" in w for w in m.warnings)
        assert num_examples(len(wav), r.audio_hop_s) >= visual_steps  # the store keeps every visual step
    else:
        assert abs(len(wav) - 1.3 * 16000) < 0.05 * 16000 and m.audio_padded_s == 0.0
        assert num_examples(len(wav), r.audio_hop_s) == 2  # the reference's cut: 16 visual steps -> 2 stored
    assert json.loads((tmp_path / "a.json").read_text())["audio_padded_s"] == m.audio_padded_s
    with pytest.raises(ValueError, match="short_audio must be 'pad' or 'cut'"):
        normalize(clips["short_audio"], tmp_path / "b.mp4", tmp_path / "b.wav", short_audio="trim")
