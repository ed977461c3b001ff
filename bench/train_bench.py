"""Training throughput of the shared training entry (:func:`models.run.train.train`) at UnAV-100 size.

Synthetic features with UnAV-100's shape: 10,790 videos (the full dataset; the training split is
3/5 of it, use ``--n-videos 6474`` for that), ``T = 224`` steps, audio 128-D, visual 2048-D.
Reports per model: seconds per epoch, epochs per minute, videos per second, peak GPU memory (CUDA)
and host RSS (peak and current), and the ratio of every run to the reference run in the same
process (the first model listed; by default the plain MIL baseline).  With ``--n-videos`` below
10,790 the epoch time is also extrapolated linearly to the full size.

Feature sources:
- ``memory`` (default): a pool of ``--pool`` distinct random fp16 videos, item ``i`` = pool video
  ``i mod pool`` with its own labels -- measures the model/optimizer side without disk I/O;
- ``store``: a real :class:`models.data.store.FeatureStore` (memory-mapped fp16) of ``--n-videos``
  videos written to a temporary folder, read through :class:`models.data.dataset.FeatureDataset` -- the
  I/O path training uses (needs ``n * T * 2176 * 2`` bytes of disk: 10.5 GB at full size).

Examples::

    python bench/train_bench.py --n-videos 256 --epochs 1 --models mil clasp          # CPU
    python bench/train_bench.py --epochs 2 --models mil clasp --amp both --out b.json  # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.run.train import train  # noqa: E402

UNAV_VIDEOS = 10_790


class SyntheticFeatures(Dataset):
    """Items in the :class:`models.data.dataset.FeatureDataset` format from a small pool of random videos."""

    def __init__(self, n: int, t_max: int, da: int, dv: int, num_classes: int, pool: int, min_len: int,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.t_max, self.classes = n, t_max, [f"c{i:03d}" for i in range(num_classes)]
        self.audio = rng.standard_normal((pool, t_max, da), dtype=np.float32).astype(np.float16)
        self.visual = rng.standard_normal((pool, t_max, dv), dtype=np.float32).astype(np.float16)
        self.lengths = rng.integers(min_len, t_max + 1, size=n)
        self.labels = np.zeros((n, num_classes), np.float32)
        for i in range(n):
            self.labels[i, rng.choice(num_classes, size=int(rng.integers(1, 4)), replace=False)] = 1.0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = i % len(self.audio)
        L = int(self.lengths[i])
        mask = torch.zeros(self.t_max, dtype=torch.bool)
        mask[:L] = True
        audio = torch.from_numpy(self.audio[p].astype(np.float32))
        visual = torch.from_numpy(self.visual[p].astype(np.float32))
        audio[L:] = 0
        visual[L:] = 0
        return {"audio": audio, "visual": visual, "mask": mask, "labels": torch.from_numpy(self.labels[i]),
                "segments": torch.zeros(0, 3), "video_id": f"v{i:06d}", "duration": 0.32 * L + 0.64,
                "length": L}


def build_store_dataset(n: int, t_max: int, da: int, dv: int, num_classes: int, root: Path, seed: int) -> Any:
    from extractors.recipes import get_recipe
    from models.data.annotations import Segment, VideoAnnotation
    from models.data.dataset import FeatureDataset
    from models.data.store import FeatureStore

    rng = np.random.default_rng(seed)
    ids = [f"v{i:06d}" for i in range(n)]
    lengths = rng.integers(t_max // 2, t_max + 1, size=n)

    def loader(vid: str) -> tuple[np.ndarray, np.ndarray]:
        r = np.random.default_rng(int(vid[1:]) + seed)
        L = int(lengths[int(vid[1:])])
        return r.standard_normal((L, da), dtype=np.float32), r.standard_normal((L, dv), dtype=np.float32)

    store = FeatureStore.build(root / "store", ids, loader)
    classes = [f"c{i:03d}" for i in range(num_classes)]
    ann = {v: VideoAnnotation(v, "train", 0.32 * int(lengths[i]) + 0.64,
                              [Segment(0.0, 1.0, classes[int(rng.integers(num_classes))])])
           for i, v in enumerate(ids)}
    return FeatureDataset(store, ann, classes, get_recipe("unav100"), subset="train", t_max=t_max)


def run_one(model: str, ds: Any, args: argparse.Namespace, amp: bool, out_root: Path) -> dict[str, Any]:
    dev = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    out = out_root / f"{model}_{'amp' if amp else 'fp32'}"
    t0 = time.perf_counter()
    train(model, ds, None, out, {}, epochs=args.epochs, batch_size=args.batch_size, lr=1e-4, seed=0,
          device=dev, amp=amp, resume=False, num_workers=args.num_workers, progress=False, plot_every=0)
    wall = time.perf_counter() - t0
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    # the first epoch includes warm-up (allocator, cuDNN/cuBLAS heuristics): report the later ones
    # when there are several
    ep = [r["train_seconds"] for r in log]
    steady = ep[1:] if len(ep) > 1 else ep
    sec = float(np.mean(steady))
    rec = {
        "model": model, "amp": bool(amp and dev.type == "cuda"), "device": str(dev),
        "n_videos": len(ds), "epochs": args.epochs, "batch_size": args.batch_size,
        "epoch_seconds": ep, "seconds_per_epoch": sec, "epochs_per_minute": 60.0 / sec,
        "videos_per_second": len(ds) / sec, "wall_seconds": wall,
        "seconds_per_epoch_at_unav_size": sec * UNAV_VIDEOS / len(ds),
        "host_rss_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "host_rss_now_gib": psutil.Process().memory_info().rss / 2**30,
        "params": None,
    }
    if dev.type == "cuda":
        rec["gpu_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        rec["gpu"] = torch.cuda.get_device_name()
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    rec["params"] = int(sum(v.numel() for v in ck["model"].values()))
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-videos", type=int, default=UNAV_VIDEOS)
    ap.add_argument("--t-max", type=int, default=224)
    ap.add_argument("--audio-dim", type=int, default=128)
    ap.add_argument("--visual-dim", type=int, default=2048)
    ap.add_argument("--num-classes", type=int, default=100)
    ap.add_argument("--models", nargs="+", default=["mil", "clasp"], help="the first is the reference")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", choices=["on", "off", "both"], default="on", help="CUDA only")
    ap.add_argument("--source", choices=["memory", "store"], default="memory")
    ap.add_argument("--pool", type=int, default=64, help="distinct videos in the memory source")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="train_bench_") as tmp:
        tmp_path = Path(tmp)
        if args.source == "store":
            ds = build_store_dataset(args.n_videos, args.t_max, args.audio_dim, args.visual_dim,
                                     args.num_classes, tmp_path, 0)
        else:
            ds = SyntheticFeatures(args.n_videos, args.t_max, args.audio_dim, args.visual_dim, args.num_classes,
                                   args.pool, args.t_max // 2)
        amps = {"on": [True], "off": [False], "both": [False, True]}[args.amp]
        if not torch.cuda.is_available() and args.device in ("auto", "cpu"):
            amps = [False]
        results = []
        for model in args.models:
            for amp in amps:
                rec = run_one(model, ds, args, amp, tmp_path / "runs")
                results.append(rec)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()
                                  if k != "epoch_seconds"}), flush=True)
    ref = results[0]
    print(f"\nreference: {ref['model']} ({'amp' if ref['amp'] else 'fp32'}), {ref['n_videos']} videos, "
          f"T={args.t_max}, dims {args.audio_dim}/{args.visual_dim}, batch {args.batch_size}, {ref['device']}")
    print(f"{'model':8s} {'prec':5s} {'s/epoch':>9s} {'epochs/min':>10s} {'videos/s':>9s} {'x ref time':>10s} "
          f"{'s/epoch@10790':>13s} {'GPU GiB':>8s} {'RSS GiB':>8s}")
    for r in results:
        print(f"{r['model']:8s} {'amp' if r['amp'] else 'fp32':5s} {r['seconds_per_epoch']:9.2f} "
              f"{r['epochs_per_minute']:10.3f} {r['videos_per_second']:9.1f} "
              f"{r['seconds_per_epoch'] / ref['seconds_per_epoch']:10.2f} {r['seconds_per_epoch_at_unav_size']:13.1f} "
              f"{r.get('gpu_peak_gib', float('nan')):8.2f} {r['host_rss_peak_gib']:8.2f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_out = tempfile.mkstemp(dir=Path(args.out).parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=1)
        os.replace(tmp_out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
