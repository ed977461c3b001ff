"""Features of a few generated clips with every recipe, saved so that a restructuring can be shown bit-identical.

    python bench/feature_snapshot.py extract /tmp/before       # on the old code (e.g. a `git worktree` of main)
    python bench/feature_snapshot.py extract /tmp/after        # on the new code
    python bench/feature_snapshot.py compare /tmp/before/features.npz /tmp/after/features.npz

Three short lavfi clips (stereo AAC at 44.1 kHz, mono at 48 kHz, and no audio; odd sizes and frame rates)
go through the media stage and every feature path with random (seeded) weights, as the tests build them:
the flow store, I3D from the store and from memory, R(2+1)D (the recipe's windows and a step larger than
the window), VGGish and the normalized wav for the demo, UnAV-100 (RAFT with one update, to stay short on a
CPU) and ActivityNet recipes, and every LLP kind (10 s and whole-video). ``compare`` prints the largest
absolute difference per array; 0 everywhere is the claim "features unchanged". ``--only-llp`` skips the
UnAV/ActivityNet/demo part (the slow one: about 8 minutes on two loaded cores; LLP about 5).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

CLIPS = (("a.mp4", "320x240", 30, 2.2, 2, 44100), ("b c.mp4", "256x200", 25, 3.1, 1, 48000),
         ("silent.mp4", "200x232", 24, 2.0, 0, 0))


def make_clips(folder: Path) -> list[Path]:
    import imageio_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, size, rate, dur, channels, sr in CLIPS:
        p = folder / name
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
               f"testsrc2=size={size}:rate={rate}:duration={dur}"]
        if channels:
            cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sr}:duration={dur}",
                    "-ac", str(channels), "-c:a", "aac"]
        subprocess.run([*cmd, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-shortest", "-y", str(p)], check=True)
        out.append(p)
    return out


def extract(out: Path, only_llp: bool) -> dict[str, np.ndarray]:
    import soundfile as sf
    import torch

    from extractors.flow import compute_flow
    from extractors.flow_store import read_flow_store
    from extractors.i3d import extract_i3d
    from extractors.llp.extract import extract_video
    from extractors.media import normalize
    from extractors.r21d import extract_r21d
    from extractors.recipes import get_recipe
    from extractors.vggish import extract_vggish

    torch.set_num_threads(1)
    clips = make_clips(out / "clips")
    res: dict[str, np.ndarray] = {}
    for name in () if only_llp else ("demo", "unav100", "activitynet"):
        r = get_recipe(name, weights="random")
        r = r.replace(raft_iters=1) if name == "unav100" else r
        for clip in clips:
            d = out / "media" / name
            mp4, wav = d / f"{clip.stem}.mp4", d / f"{clip.stem}.wav"
            normalize(clip, mp4, wav, fps=r.fps, min_duration_s=0.5)
            res[f"wav/{name}/{clip.stem}"] = sf.read(wav, dtype="float32")[0]
            if r.visual == "i3d":
                store = d / f"{clip.stem}.flow.npz"
                compute_flow(mp4, r, store, batch_size=3)
                res[f"flow/{name}/{clip.stem}"] = read_flow_store(store)
                res[f"i3d_store/{name}/{clip.stem}"] = extract_i3d(mp4, r, batch_size=2, flow_path=store)[0]
                if name == "demo":
                    res[f"i3d_mem/{name}/{clip.stem}"] = extract_i3d(mp4, r, batch_size=3)[0]
            else:
                res[f"r21d/{name}/{clip.stem}"] = extract_r21d(mp4, r, batch_size=2)[0]
                res[f"r21d_s5s7/{name}/{clip.stem}"] = extract_r21d(mp4, r.replace(stack=5, step=7), batch_size=3)[0]
            res[f"vggish/{name}/{clip.stem}"] = extract_vggish(wav, r)[0]
            print(name, clip.name, flush=True)
    for clip in clips:
        feats, _ = extract_video(clip, ["resnet152", "r21d", "clip", "vggish", "clap", "clap_maps"], mode="random",
                                 seed=1, clip_model="ViT-B-32")
        res.update({f"llp/{k}/{clip.stem}": v for k, v in feats.items()})
        feats, _ = extract_video(clip, ["r21d", "clap_maps"], mode="random", seed=1, max_seconds=None)
        res.update({f"llp_whole/{k}/{clip.stem}": v for k, v in feats.items()})
        print("llp", clip.name, flush=True)
    np.savez(out / "features.npz", **res)
    return res


def compare(a_path: Path, b_path: Path) -> float:
    """Largest absolute difference over the arrays both snapshots hold (shapes and dtypes must agree)."""
    a, b = np.load(a_path), np.load(b_path)
    keys = sorted(set(a.files) & set(b.files))
    if set(a.files) != set(b.files):
        print(f"only in one snapshot (not compared): {sorted(set(a.files) ^ set(b.files))}")
    worst = 0.0
    for k in keys:
        x, y = a[k], b[k]
        if x.shape != y.shape or x.dtype != y.dtype:
            raise SystemExit(f"{k}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
        d = float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()) if x.size else 0.0
        if d:
            print(f"{k}: max |d| = {d:g}")
        worst = max(worst, d)
    print(f"{len(keys)} arrays, max |d| = {worst:g}")
    return worst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("out", type=Path)
    e.add_argument("--only-llp", action="store_true")
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args()
    if args.cmd == "extract":
        extract(args.out, args.only_llp)
        return 0
    return 1 if compare(args.a, args.b) else 0


if __name__ == "__main__":
    raise SystemExit(main())
