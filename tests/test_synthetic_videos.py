"""Synthetic demo videos: format, determinism, and that the pixels/samples match the annotations."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from extractors.probe import probe
from extractors.synthetic_videos import (
    AUDIO_SR,
    CHANGE_PALETTE,
    DEFAULT_CLASSES,
    _class_freq,
    main,
    make_change_clip,
    make_demo_dataset,
)

N, DUR = 6, 5.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    ann = make_demo_dataset(out, n_videos=N, duration_s=DUR, seed=3)
    return out, ann


def _decode(path: Path):
    """(centre-region frames as float (n, h, w, 3), mono audio float64) of a clip."""
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(float)
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().mean(0) for f in c.decode(audio=0)])
    return frames, audio


def _band_energy(x: np.ndarray, f: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / AUDIO_SR)
    return float(spec[(freqs > 0.85 * f) & (freqs < 1.15 * f)].sum() / max(1, len(x)))


def test_layout_and_unav_format(demo):
    out, ann = demo
    assert ann == out / "annotations.json"
    db = json.loads(ann.read_text())["database"]
    classes = (out / "classes.txt").read_text().splitlines()
    assert classes == DEFAULT_CLASSES
    assert sorted(db) == [f"demo_{i:03d}" for i in range(N)]
    assert {v["subset"] for v in db.values()} == {"train", "validation", "test"}
    assert sum(v["subset"] == "train" for v in db.values()) >= N // 2
    for vid, v in db.items():
        assert v["duration"] == DUR and v["annotations"]
        for a in v["annotations"]:
            s, e = a["segment"]
            assert 0 <= s < e <= DUR and e - s >= 0.8
            assert classes[a["label_id"]] == a["label"]
        info = probe(out / "videos" / f"{vid}.mp4")
        assert (info.width, info.height, info.fps_avg, info.has_audio) == (320, 240, 25.0, True)
        assert info.audio_codec == "aac" and abs(info.duration_s - DUR) < 0.05


def test_deterministic_for_a_seed(demo, tmp_path):
    out, ann = demo
    again = make_demo_dataset(tmp_path / "a", n_videos=N, duration_s=DUR, seed=3)
    assert again.read_text() == ann.read_text()
    assert (tmp_path / "a" / "distractors.json").read_text() == (out / "distractors.json").read_text()
    assert (tmp_path / "a/videos/demo_000.mp4").read_bytes() == (out / "videos/demo_000.mp4").read_bytes()
    other = make_demo_dataset(tmp_path / "b", n_videos=N, duration_s=DUR, seed=4)
    assert other.read_text() != ann.read_text()


def test_events_are_in_pixels_and_samples(demo):
    """AV events: pattern in the centre region AND class-band energy; visual-only distractors: pattern
    without the sound; audio-only: sound without the pattern; background: neither."""
    out, ann = demo
    db = json.loads(ann.read_text())["database"]
    dis = json.loads((out / "distractors.json").read_text())
    kinds_seen = set()
    for vid, v in db.items():
        frames, audio = _decode(out / "videos" / f"{vid}.mp4")
        h, w = frames.shape[1:3]
        centre = frames[:, h // 4 + 4: 3 * h // 4 - 4, w // 4 + 4: 3 * w // 4 - 4]
        grey = int("30", 16)
        spans = [(a["segment"], a["label_id"], "av") for a in v["annotations"]]
        spans += [(d["segment"], d["label_id"], d["kind"]) for d in dis[vid]]
        busy = np.zeros(len(frames), bool)
        for (s, e), k, kind in spans:
            kinds_seen.add(kind)
            fa, fb = round(s * 25), round(e * 25)
            busy[fa:fb] = True
            inner = centre[fa + 1: fb - 1]
            visual = np.abs(inner.mean(axis=(1, 2, 3)) - grey).min() > 12 or inner.std(axis=(1, 2)).mean() > 30
            seg = audio[int((s + 0.05) * AUDIO_SR): int((e - 0.05) * AUDIO_SR)]
            f = _class_freq(k)
            # against the same band of the known background (white noise, amplitude 0.02)
            bg = _band_energy(0.02 * np.random.default_rng(0).standard_normal(len(seg)), f)
            assert visual == (kind in ("av", "visual_only")), (vid, s, e, kind)
            assert (_band_energy(seg, f) > 30 * bg) == (kind in ("av", "audio_only")), (vid, s, e, kind)
        idle = centre[~busy]
        assert np.abs(idle.mean(axis=(1, 2, 3)) - grey).max() < 8  # only the noisy grey background
    assert kinds_seen == {"av", "audio_only", "visual_only"}


@pytest.mark.parametrize("fps,size", [("30", (176, 144)), ("30000/1001", (175, 143))])
def test_change_clip(tmp_path, fps, size):
    p = make_change_clip(tmp_path / "c.mp4", fps, 45, [10, 30], size=size)
    info = probe(p)
    assert (info.width, info.height) == size and info.n_video_packets == 45
    pal = np.array([[int(c[2:4], 16), int(c[4:6], 16), int(c[6:8], 16)] for c in CHANGE_PALETTE], float)
    frames, audio = _decode(p)
    labels = [int(((pal - f.reshape(-1, 3).mean(0)) ** 2).sum(1).argmin()) for f in frames]
    assert labels == [0] * 10 + [1] * 20 + [2] * 15
    onset = int(np.argmax(np.abs(audio) > 0.1)) / AUDIO_SR
    assert abs(onset - 10 / float(Fraction(fps))) < 0.01


def test_cli_spec(tmp_path, capsys):
    main(["--out-dir", str(tmp_path / "d d"), "--spec", '{"n_videos": 2, "duration_s": 2.5, "seed": 5}'])
    assert "wrote 2 videos" in capsys.readouterr().out
    db = json.loads((tmp_path / "d d" / "annotations.json").read_text())["database"]
    assert sorted(db) == ["demo_000", "demo_001"] and all(v["duration"] == 2.5 for v in db.values())
    assert sorted(p.name for p in (tmp_path / "d d" / "videos").iterdir()) == ["demo_000.mp4", "demo_001.mp4"]
    with pytest.raises(SystemExit, match="unknown keys"):
        main(["--out-dir", str(tmp_path / "x"), "--spec", '{"n_video": 2}'])
