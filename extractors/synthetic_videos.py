"""Synthetic video-level demo data: small mp4 clips with known audio-visual events.

Real datasets cannot be downloaded here, so the demo, the CI run and the alignment tests use clips
generated with ffmpeg whose ground truth is known by construction (docs/recipes.md, "Synthetic benchmarks"):

* every class has a **distinct visual pattern** (an ffmpeg lavfi test source or a solid colour, drawn
  as a centred region over a dark noisy background) **and a distinct sound** (a sine, an amplitude-
  modulated sine or a band of noise at a class frequency, over low background noise);
* an **audio-visual event** of class c during [s, e] shows c's pattern and plays c's sound for exactly
  that span; its boundaries are multiples of the frame period so the visual edge falls on a frame;
* **distractors** show a class pattern without its sound (visual-only) or play a class sound without
  its pattern (audio-only); they are *not* annotated (a model must not report them as AV events) and
  are listed in ``distractors.json`` for inspection.

The annotation file follows the UnAV-100 release format:
``{"database": {vid: {"subset", "duration", "annotations": [{"segment": [s, e], "label", "label_id"}]}}}``.

Audio is synthesised with numpy (exact onsets, seeded) and muxed as AAC; video is a lavfi filter graph
(deterministic sources; the background noise uses a fixed ``all_seed``). Everything is written to a
temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from extractors.ffmpeg import ffmpeg_exe

DEFAULT_CLASSES = [
    "red_beep",
    "bars_hum",
    "testcard_whistle",
    "fractal_hiss",
    "blue_chirp",
    "grid_buzz",
    "spectrum_rumble",
    "green_ring",
]

AUDIO_SR = 44100
FPS = 25
BG_COLOUR = "0x303030"
_SOURCES = [  # lavfi source per class (region size and rate appended), cycled with colours beyond
    "color=c=red",
    "smptebars",
    "testsrc2",
    "mandelbrot=maxiter=200",
    "color=c=0x2050ff",
    "rgbtestsrc",
    "colorspectrum",
    "color=c=0x20d040",
]


@dataclass(frozen=True)
class _Event:
    cls: int
    start: float
    end: float
    kind: str  # "av", "audio_only", "visual_only"


def _class_source(k: int) -> str:
    if k < len(_SOURCES):
        return _SOURCES[k]
    hue = (k * 0.61803398875) % 1.0  # golden-ratio hues: well separated colours for extra classes
    rgb = np.array([abs(hue * 6 - 3) - 1, 2 - abs(hue * 6 - 2), 2 - abs(hue * 6 - 4)]).clip(0, 1)
    return "color=c=0x" + "".join(f"{int(v * 255):02x}" for v in rgb)


def _class_freq(k: int) -> float:
    """Class centre frequency: half-octave spacing from 300 Hz, folded to stay below 6 kHz."""
    return 300.0 * 2.0 ** ((k % 9) * 0.5) * (1.0 + 0.07 * (k // 9))


def _class_sound(k: int, n: int, rng: np.random.Generator, sr: int = AUDIO_SR) -> np.ndarray:
    """n samples of class k's sound (sine / AM sine / noise band cycle), peak about 0.3."""
    t = np.arange(n) / sr
    f = _class_freq(k)
    kind = k % 3
    if kind == 0:
        x = np.sin(2 * np.pi * f * t)
    elif kind == 1:
        x = np.sin(2 * np.pi * f * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t))
    else:  # noise band around f: white noise through an FFT brick-wall band-pass (+-20 %)
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / sr)
        spec[(freqs < 0.8 * f) | (freqs > 1.2 * f)] = 0
        x = np.fft.irfft(spec, n)
        x /= max(1e-9, np.abs(x).max())
    ramp = min(n // 2, int(0.005 * sr))  # 5 ms ramps avoid clicks without moving the onset
    if ramp > 0:
        env = np.ones(n)
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
        x = x * env
    return 0.3 * x


def run_generator(cmd: list[str]) -> None:
    """Run an ffmpeg generator command; its last stderr line is the error."""
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"ffmpeg failed: {tail[-1] if tail else proc.returncode}")


def _write_wav_int16(path: Path, x: np.ndarray, sr: int) -> None:
    import soundfile as sf

    sf.write(str(path), np.clip(x, -1, 1), sr, subtype="PCM_16", format="WAV")


def _tmp(final: Path, ext: str) -> Path:
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}{ext}")


def _render(
    path: Path,
    events: Sequence[_Event],
    duration_s: float,
    size: tuple[int, int],
    fps: int,
    seed: int,
    rng: np.random.Generator,
    region: float = 0.5,
    noise: int = 10,
) -> None:
    """Render one clip: lavfi overlays for visual spans, numpy audio for sound spans, AAC in mp4.

    ``region``: side of the centred pattern region as a fraction of the frame; ``noise``: strength of
    the background's temporal pixel noise (0 = a clean flat background)."""
    w, h = size
    rw, rh = max(2, int(w * region)) & ~1, max(2, int(h * region)) & ~1
    x0, y0 = (w - rw) // 2, (h - rh) // 2
    n_audio = int(round(duration_s * AUDIO_SR))
    audio = 0.02 * rng.standard_normal(n_audio)  # low background noise
    bg_noise = f",noise=alls={noise}:allf=t:all_seed={seed % 2**31}" if noise > 0 else ""
    graph = [f"color=c={BG_COLOUR}:s={w}x{h}:r={fps}{bg_noise}[bg0]"]
    last = "bg0"
    for i, ev in enumerate(events):
        if ev.kind in ("av", "audio_only"):
            a, b = int(round(ev.start * AUDIO_SR)), int(round(ev.end * AUDIO_SR))
            audio[a:b] += _class_sound(ev.cls, b - a, rng)
        if ev.kind in ("av", "visual_only"):
            src = _class_source(ev.cls)
            sep = ":" if "=" in src else "="
            graph.append(f"{src}{sep}s={rw}x{rh}:r={fps}[p{i}]")
            # frame n is shown at n/fps: enable on frame indices so the edge is exact
            fa, fb = int(round(ev.start * fps)), int(round(ev.end * fps))
            graph.append(f"[{last}][p{i}]overlay={x0}:{y0}:enable='between(n,{fa},{fb - 1})'[bg{i + 1}]")
            last = f"bg{i + 1}"
    graph.append(f"[{last}]format=yuv420p[v]")
    tmp_wav, tmp_mp4 = _tmp(path, ".wav"), _tmp(path, ".mp4")
    try:
        _write_wav_int16(tmp_wav, audio, AUDIO_SR)
        run_generator([
            ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-i", "file:" + str(tmp_wav), "-filter_complex", ";".join(graph),
            "-map", "[v]", "-map", "0:a", "-t", f"{duration_s:.6f}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
            "-c:a", "aac", "-b:a", "96k", "-f", "mp4", "file:" + str(tmp_mp4),
        ])
        os.replace(tmp_mp4, path)
    finally:
        tmp_wav.unlink(missing_ok=True)
        tmp_mp4.unlink(missing_ok=True)


def _plan_video(
    rng: np.random.Generator,
    n_classes: int,
    duration_s: float,
    fps: int,
    grid_s: float | None = None,
    min_event_s: float = 1.0,
    max_av: int = 3,
    max_distractors: int = 2,
    max_event_s: float | None = None,
) -> list[_Event]:
    """Non-overlapping spans: 1..max_av AV events and 0..max_distractors distractors, frame-aligned.

    Default: spans >= ``min(1 s, 0.8 slot)`` at arbitrary frame positions. With ``grid_s`` every
    boundary is a multiple of ``grid_s`` (the demo recipe's feature step, so each feature window is
    either inside or outside an event) and spans last ``min_event_s .. max_event_s``; a gap of >= one
    grid cell separates consecutive spans."""
    q = 1.0 / fps
    n_av = int(rng.integers(1, max_av + 1))
    n_dis = int(rng.integers(0, max_distractors + 1))
    kinds = ["av"] * n_av + [str(k) for k in rng.choice(["audio_only", "visual_only"], n_dis)]
    rng.shuffle(kinds)
    if grid_s is not None:
        return _plan_on_grid(rng, kinds, n_classes, duration_s, fps, grid_s, min_event_s, max_event_s)
    events: list[_Event] = []
    # split the timeline into len(kinds) slots; place one span (1.0 s .. slot length) inside each
    slot = duration_s / len(kinds)
    for i, kind in enumerate(kinds):
        lo_slot, hi_slot = i * slot, (i + 1) * slot
        length = float(rng.uniform(min(1.0, slot * 0.8), max(min(1.0, slot * 0.8), slot * 0.85)))
        start = float(rng.uniform(lo_slot, max(lo_slot, hi_slot - length)))
        start = round(start / q) * q
        end = min(round((start + length) / q) * q, duration_s)
        events.append(_Event(int(rng.integers(0, n_classes)), round(start, 6), round(end, 6), kind))
    if all(e.kind != "av" for e in events):  # pragma: no cover - n_av >= 1 guarantees one
        raise AssertionError("no AV event planned")
    return events


def _plan_on_grid(
    rng: np.random.Generator,
    kinds: list[str],
    n_classes: int,
    duration_s: float,
    fps: int,
    grid_s: float,
    min_event_s: float,
    max_event_s: float | None = None,
) -> list[_Event]:
    """Grid-aligned spans (see :func:`_plan_video`) of ``min_event_s .. max_event_s`` at random places:
    the free cells are split at random into the gaps before, between (>= 1 cell) and after the spans.
    Distractors (then AV events, keeping one) are dropped while the spans do not fit."""
    frames_per_cell = grid_s * fps
    if abs(frames_per_cell - round(frames_per_cell)) > 1e-6:
        raise ValueError(f"grid_s {grid_s} is not a whole number of frames at {fps} FPS")
    n_cells = int(np.floor(duration_s / grid_s + 1e-9))
    min_cells = max(1, int(np.ceil(min_event_s / grid_s - 1e-9)))
    max_cells = n_cells if max_event_s is None else max(min_cells, int(np.floor(max_event_s / grid_s + 1e-9)))
    if min_cells > n_cells:
        raise ValueError(f"duration {duration_s} s holds no {min_event_s} s event on a {grid_s} s grid")
    lengths = [int(rng.integers(min_cells, min(max_cells, n_cells) + 1)) for _ in kinds]
    while sum(lengths) + len(kinds) - 1 > n_cells:
        drop = next((i for i, k in enumerate(kinds) if k != "av"), None)
        if drop is None:
            drop = len(kinds) - 1 if len(kinds) > 1 else None
        if drop is None:  # one AV event longer than the clip: shorten it
            lengths[0] = n_cells
            break
        kinds.pop(drop)
        lengths.pop(drop)
    free = n_cells - sum(lengths) - (len(kinds) - 1)
    cuts = np.sort(rng.integers(0, free + 1, size=len(kinds)))
    gaps = np.diff(np.concatenate([[0], cuts, [free]]))  # before each span, then after the last
    events, pos = [], int(gaps[0])
    for i, (kind, length) in enumerate(zip(kinds, lengths, strict=True)):
        start, end = pos, pos + length
        events.append(_Event(int(rng.integers(0, n_classes)), round(start * grid_s, 6), round(end * grid_s, 6),
                             kind))
        pos = end + 1 + int(gaps[i + 1])
    return events


def _splits(n: int, rng: np.random.Generator, n_val: int | None = None, n_test: int | None = None) -> list[str]:
    """About 70 / 15 / 15 %, with at least one validation and one test video when n >= 3 (or the
    given validation / test counts)."""
    if n_val is None:
        n_val = max(1, round(0.15 * n)) if n >= 3 else 0
    if n_test is None:
        n_test = max(1, round(0.15 * n)) if n >= 3 else 0
    if n_val + n_test >= n:
        raise ValueError(f"{n} videos leave no training video after {n_val} validation + {n_test} test")
    subsets = ["validation"] * n_val + ["test"] * n_test
    subsets = ["train"] * (n - len(subsets)) + subsets
    return [subsets[i] for i in rng.permutation(n)]


def make_demo_dataset(
    out_dir: str | os.PathLike[str],
    n_videos: int = 8,
    duration_s: float = 8.0,
    seed: int = 0,
    classes: list[str] | None = None,
    size: tuple[int, int] = (320, 240),
    fps: int = FPS,
    grid_s: float | None = None,
    min_event_s: float = 1.0,
    max_event_s: float | None = None,
    max_av: int = 3,
    max_distractors: int = 2,
    region: float = 0.5,
    noise: int = 10,
    n_val: int | None = None,
    n_test: int | None = None,
) -> Path:
    """Generate ``out_dir/videos/demo_XXX.mp4``, ``annotations.json`` (UnAV-100 format),
    ``classes.txt`` (one label per line, line number = ``label_id``) and ``distractors.json``.

    The defaults make hard-ish clips (small pattern region, noisy background, arbitrary boundaries);
    the workflow's demo passes easier settings (``grid_s``, larger ``region``, ``noise=0``) so that
    random-weight extractors keep the events learnable (see config/config.yaml). Deterministic for
    a given seed. Returns the path of the annotation JSON."""
    classes = list(DEFAULT_CLASSES if classes is None else classes)
    if not classes:
        raise ValueError("need at least one class")
    if n_videos < 1 or duration_s < 2.0:
        raise ValueError("need n_videos >= 1 and duration_s >= 2 s")
    out_dir = Path(out_dir)
    vdir = out_dir / "videos"
    vdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if not 0.0 < region <= 1.0:
        raise ValueError(f"region must be in (0, 1], got {region}")
    subsets = _splits(n_videos, rng, n_val, n_test)
    database: dict[str, dict] = {}
    distractors: dict[str, list[dict]] = {}
    for i in range(n_videos):
        vid = f"demo_{i:03d}"
        vrng = np.random.default_rng([seed, i])
        events = _plan_video(vrng, len(classes), duration_s, fps, grid_s, min_event_s, max_av, max_distractors,
                             max_event_s)
        _render(vdir / f"{vid}.mp4", events, duration_s, size, fps, seed * 1000 + i, vrng, region, noise)
        database[vid] = {
            "subset": subsets[i],
            "duration": float(duration_s),
            "annotations": [
                {"segment": [e.start, e.end], "label": classes[e.cls], "label_id": e.cls}
                for e in events if e.kind == "av"
            ],
        }
        distractors[vid] = [
            {"segment": [e.start, e.end], "label": classes[e.cls], "label_id": e.cls, "kind": e.kind}
            for e in events if e.kind != "av"
        ]
    ann = out_dir / "annotations.json"
    for path, text in (
        (ann, json.dumps({"database": database}, indent=1)),
        (out_dir / "distractors.json", json.dumps(distractors, indent=1)),
        (out_dir / "classes.txt", "".join(c + "\n" for c in classes)),
    ):
        tmp = _tmp(path, path.suffix)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return ann


CHANGE_PALETTE = ["0x1030a0", "0xf0e020", "0xd02020", "0x20c040", "0xf0f0f0", "0x000000"]


def make_change_clip(
    path: str | os.PathLike[str],
    fps: float | str | Fraction,
    n_frames: int,
    change_frame: int | Sequence[int],
    size: tuple[int, int] = (176, 144),
    tone_hz: float = 1000.0,
    audio: bool = True,
) -> Path:
    """A clip whose solid colour changes abruptly at known frame index(es), for alignment tests.

    Frame ``n`` shows ``CHANGE_PALETTE[j]`` where ``j`` = number of change frames ``<= n``. With
    ``audio``, a 44.1 kHz mono AAC track is silent until the first change and carries a sine of
    ``tone_hz`` from ``change_frame / fps`` seconds on. ``fps`` may be a fraction such as
    ``"30000/1001"``. Odd sizes are allowed (encoded as yuv444p, which libx264 accepts)."""
    path = Path(path)
    rate = Fraction(str(fps)) if not isinstance(fps, Fraction) else fps
    changes = sorted([change_frame] if isinstance(change_frame, int) else list(change_frame))
    if len(changes) >= len(CHANGE_PALETTE):
        raise ValueError(f"at most {len(CHANGE_PALETTE) - 1} changes")
    w, h = size
    graph = f"color=c={CHANGE_PALETTE[0]}:s={w}x{h}:r={rate.numerator}/{rate.denominator}"
    for j, cf in enumerate(changes, start=1):
        graph += f",drawbox=x=0:y=0:w=iw:h=ih:color={CHANGE_PALETTE[j]}:t=fill:enable='gte(n,{cf})'"
    odd = w % 2 or h % 2
    graph += ",format=" + ("yuv444p" if odd else "yuv420p") + "[v]"
    tmp_mp4, tmp_wav = _tmp(path, ".mp4"), _tmp(path, ".wav")
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    try:
        if audio:
            dur = n_frames / float(rate)
            n = int(round(dur * AUDIO_SR))
            t = np.arange(n) / AUDIO_SR
            x = np.where(t >= changes[0] / float(rate), 0.4 * np.sin(2 * np.pi * tone_hz * t), 0.0)
            _write_wav_int16(tmp_wav, x, AUDIO_SR)
            cmd += ["-i", "file:" + str(tmp_wav)]
        cmd += ["-filter_complex", graph, "-map", "[v]"]
        if audio:
            cmd += ["-map", "0:a", "-c:a", "aac", "-b:a", "96k"]
        cmd += ["-frames:v", str(n_frames), "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                "-f", "mp4", "file:" + str(tmp_mp4)]
        run_generator(cmd)
        os.replace(tmp_mp4, path)
    finally:
        tmp_mp4.unlink(missing_ok=True)
        tmp_wav.unlink(missing_ok=True)
    return path


def make_clip(
    path: str | os.PathLike[str],
    size: tuple[int, int] = (176, 144),
    fps: float | str = "30000/1001",
    duration_s: float = 2.0,
    audio: bool = True,
    vfr: bool = False,
    audio_only: bool = False,
    sample_rate: int = 48000,
    channels: int = 2,
) -> Path:
    """A generic test clip (testsrc2 + sine) with the requested geometry and rate.

    ``vfr=True`` keeps every frame of the first half and every third frame after it, written with
    ``-fps_mode vfr`` so the timestamps really are variable. ``audio_only`` writes an .m4a-like
    mp4 with only an AAC track (for the 'no video stream' case)."""
    path = Path(path)
    w, h = size
    rate = Fraction(str(fps))
    tmp = _tmp(path, path.suffix or ".mp4")
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if not audio_only:
        pix = "yuv444p" if (w % 2 or h % 2) else "yuv420p"
        # testsrc2 rounds odd sizes down, so render even and scale to the exact (maybe odd) size
        vf = (f"testsrc2=s={w + w % 2}x{h + h % 2}:r={rate.numerator}/{rate.denominator}:d={duration_s},"
              f"scale={w}:{h},format={pix}")
        cmd += ["-f", "lavfi", "-i", vf]
    if audio or audio_only:
        layout = "mono" if channels == 1 else "stereo"
        cmd += ["-f", "lavfi", "-i",
                f"sine=f=440:sample_rate={sample_rate}:d={duration_s},aformat=channel_layouts={layout}"]
    if not audio_only:
        half = int(float(rate) * duration_s / 2)
        if vfr:
            cmd += ["-vf", f"select='lt(n,{half})+not(mod(n,3))'", "-fps_mode", "vfr"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", pix]
    if audio or audio_only:
        cmd += ["-c:a", "aac"]
    cmd += ["-f", "mp4", "file:" + str(tmp)]
    try:
        run_generator(cmd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    """CLI for the workflow: ``python -m extractors.synthetic_videos --out-dir D --spec '{"n_videos": 8}'``.

    ``--spec`` is a JSON object of make_demo_dataset keyword arguments (n_videos, duration_s, seed,
    classes, size, fps, grid_s, min_event_s, max_event_s, max_av, max_distractors, region, noise, n_val, n_test)."""
    ap = argparse.ArgumentParser(prog="python -m extractors.synthetic_videos", description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--spec", default="{}", help="JSON object of make_demo_dataset keyword arguments")
    args = ap.parse_args(argv)
    spec = json.loads(args.spec)
    if not isinstance(spec, dict):
        raise SystemExit("--spec must be a JSON object")
    allowed = {"n_videos", "duration_s", "seed", "classes", "size", "fps", "grid_s", "min_event_s", "max_event_s", "max_av",
               "max_distractors", "region", "noise", "n_val", "n_test"}
    unknown = set(spec) - allowed
    if unknown:
        raise SystemExit(f"--spec: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    if "size" in spec:
        spec["size"] = tuple(spec["size"])
    ann = make_demo_dataset(args.out_dir, **spec)
    db = json.loads(ann.read_text())["database"]
    n_ev = sum(len(v["annotations"]) for v in db.values())
    print(f"wrote {len(db)} videos with {n_ev} audio-visual events to {args.out_dir / 'videos'}; annotations {ann}")


if __name__ == "__main__":
    main()
