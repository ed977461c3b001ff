"""Throughput of the I3D/RAFT extraction, per stage and end to end, as video-seconds per second.

    python bench/extract_bench.py                        # CPU small form (1 window of the UnAV recipe)
    python bench/extract_bench.py --device cuda --frames 1000 --batch-size 64
    python bench/extract_bench.py --raft-iters 8 --bf16  # + cosine of I3D-flow features vs exact mode

Stages: decode+resize (reference OpenCV/PIL path), RAFT alone, I3D-RGB, I3D-flow, end to end
(``extract_i3d`` with in-memory flow). End-to-end throughput is printed as a ratio to the RAFT-alone
throughput measured in the same run (the design's ceiling: RAFT dominates). For ``--bf16`` or
``--raft-iters`` != 20 the exact mode (fp32, 20 updates) is also run and the cosine similarity of the
I3D-flow features is reported. It also reports flow-store bytes per video-hour (Farneback flow on the
same real clip as a proxy for real flow when RAFT weights are random).

Weights: ``--weights random`` (default here: none can be downloaded) is labelled in the output; with
random RAFT weights the flow is not meaningful, so the cosine and store size of the RAFT run measure
numerics/format only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extractors.download_like_clips import THIRTY_FPS_LIKE, make_activitynet_like_clip  # noqa: E402
from extractors.flow import compute_flow, crop_quantize  # noqa: E402
from extractors.flow_store import read_flow_store  # noqa: E402
from extractors.frames import iter_frames, num_pairs_needed, num_windows  # noqa: E402
from extractors.i3d import build_i3d, extract_i3d, flow_input, rgb_input  # noqa: E402
from extractors.raft import RAFTFlow, raft_pairs  # noqa: E402
from extractors.recipes import get_recipe  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reencode(src: Path, dst: Path, fps: float, frames: int) -> None:
    """The reference re-encode (``-filter:v fps=fps=...``, libx264 defaults), first ``frames`` frames."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-filter:v",
           f"fps=fps={fps}", "-frames:v", str(frames), "-an", "-c:v", "libx264", str(dst)]
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--raft-iters", type=int, default=20)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--frames", type=int, default=25, help="frames of the clip (25 = one UnAV window)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--video", type=Path, default=None,
                   help="source clip (default: a generated 480x360 30 fps ActivityNet-like clip)")
    p.add_argument("--weights", choices=["random", "pretrained"], default="random")
    p.add_argument("--weights-root", type=Path, default=Path("resources/weights"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    recipe = get_recipe("unav100", weights=args.weights, raft_iters=args.raft_iters)
    exact = recipe.replace(raft_iters=20)
    print(f"device={dev} threads={torch.get_num_threads()} load={os.getloadavg()[0]:.1f} "
          f"weights={args.weights}{' (RANDOM: timings/numerics only)' if args.weights == 'random' else ''}")

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        mp4 = tmp / "clip.mp4"
        src = args.video or make_activitynet_like_clip(tmp / "src.mp4", *THIRTY_FPS_LIKE)
        reencode(src, mp4, recipe.fps, args.frames)

        t = time.perf_counter()
        frames = np.stack(list(iter_frames(mp4, recipe.short_side)))
        t_decode = time.perf_counter() - t
        n = len(frames)
        video_s = n / recipe.fps
        n_win = num_windows(n, recipe.min_frames, recipe.step)
        n_pairs = num_pairs_needed(n_win, recipe.stack, recipe.step)
        if n_win == 0:
            raise SystemExit(f"clip has {n} frames; need at least {recipe.stack + 1}")
        # the end-to-end run processes the windowed part of the clip: compare per window-covered seconds
        covered_s = (n_pairs + 1) / recipe.fps
        print(f"clip: {n} frames {frames.shape[1]}x{frames.shape[2]} ({video_s:.2f} s), {n_win} windows, "
              f"{n_pairs} flow pairs")

        raft = RAFTFlow(iters=recipe.raft_iters)
        from extractors.weight_loading import build_model_weights

        build_model_weights(raft.net, recipe.raft_weights, recipe.weights, args.weights_root, recipe.seed)
        raft = raft.to(dev).eval()
        rgb, _ = build_i3d("rgb", "i3d_rgb", recipe.weights, args.weights_root, recipe.seed, dev)
        flw, _ = build_i3d("flow", "i3d_flow", recipe.weights, args.weights_root, recipe.seed, dev)

        with torch.no_grad():
            raft_pairs(raft, frames[:2], dev, 1, dtype)  # warm-up
            sync(dev)
            t = time.perf_counter()
            flow = raft_pairs(raft, frames[: n_pairs + 1], dev, args.batch_size, dtype)
            sync(dev)
            t_raft = time.perf_counter() - t
            q = crop_quantize(flow, recipe.crop)
            wins = torch.from_numpy(np.stack([frames[i * recipe.step: i * recipe.step + recipe.stack + 1]
                                              for i in range(n_win)])).to(dev)
            qw = torch.stack([q[i * recipe.step: i * recipe.step + recipe.stack] for i in range(n_win)])
            timings = {}
            for name, model, make in (("i3d-rgb", rgb, lambda b: rgb_input(wins[b], recipe.stack, recipe.crop)),
                                      ("i3d-flow", flw, lambda b: flow_input(qw[b]))):
                sync(dev)
                t = time.perf_counter()
                for s in range(0, n_win, args.batch_size):
                    sl = slice(s, s + args.batch_size)
                    with torch.autocast(torch.device(dev).type, dtype=torch.bfloat16, enabled=args.bf16):
                        model(make(sl), features=True)
                sync(dev)
                timings[name] = time.perf_counter() - t

        mods = {"rgb": rgb, "flow": flw, "flow_net": raft}
        sync(dev)
        t = time.perf_counter()
        feats, _ = extract_i3d(mp4, recipe, device=dev, batch_size=args.batch_size, dtype=dtype, modules=mods)
        sync(dev)
        t_e2e = time.perf_counter() - t

        rows = [("decode+resize", video_s / t_decode), ("raft", covered_s / t_raft),
                ("i3d-rgb", covered_s / timings["i3d-rgb"]), ("i3d-flow", covered_s / timings["i3d-flow"]),
                ("end-to-end", covered_s / t_e2e)]
        print(f"{'stage':<14} {'video-s/s':>10}")
        for name, v in rows:
            print(f"{name:<14} {v:>10.4f}")
        print(f"RAFT: {n_pairs / t_raft:.3f} pairs/s ({recipe.raft_iters} updates, {str(dtype)[6:]}, "
              f"batch {args.batch_size})")
        print(f"end-to-end / RAFT-alone throughput = {(covered_s / t_e2e) / (covered_s / t_raft):.3f}")

        if args.bf16 or recipe.raft_iters != 20:
            exact_raft = RAFTFlow(iters=20)
            exact_raft.load_state_dict(raft.state_dict())
            exact_raft = exact_raft.to(dev).eval()
            ref, _ = extract_i3d(mp4, exact, device=dev, batch_size=args.batch_size,
                                 modules={"rgb": rgb, "flow": flw, "flow_net": exact_raft})
            a, b = feats[:, 1024:].astype(np.float64), ref[:, 1024:].astype(np.float64)
            cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
            print(f"I3D-flow cosine vs exact (fp32, 20 updates): mean {cos.mean():.6f} min {cos.min():.6f}")

        for label, rcp, net in (("farneback (real-flow proxy)", recipe.replace(flow="farneback"), None),
                                ("raft (this run's weights)", recipe, raft)):
            store = tmp / f"{label.split()[0]}.npz"
            prov = compute_flow(mp4, rcp, store, device=dev, batch_size=args.batch_size, flow_net=net)
            qs = read_flow_store(store)
            per_hour = prov["bytes"] / (prov["n_pairs"] / recipe.fps) * 3600
            raw_hour = qs[0].size * recipe.fps * 3600 if len(qs) else 0
            print(f"flow store [{label}]: {prov['bytes']} B for {prov['n_pairs']} pairs -> "
                  f"{per_hour / 1e9:.2f} GB per video-hour (raw uint8 {raw_hour / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
