"""Feature store at UnAV-100 scale: build time, disk size, one epoch through FeatureDataset, peak RSS.

UnAV-100 at full size is 10,790 videos x 224 steps x 2,176 dims (128 VGGish + 2048 I3D): 21 GB in
float32, 10.5 GB in our fp16 store. docs/recipes.md ("Memory") requires training to stream or memory-map and
stay under 4 GiB RSS. This script

1. builds a store of ``--n-videos`` synthetic videos (lengths drawn around the UnAV-100 mean, or
   fixed with ``--fixed-len``) through ``FeatureStore.build`` (streaming, one video in memory);
2. iterates once over ``FeatureDataset`` + ``make_loader`` (shuffled, batch 16, T_max 224);
3. as the in-process reference, loads ``--n-ref`` of the same videos the way a per-video loader
   would (``np.load`` of float32 ``.npy`` files, our layout) and prints the per-video time ratio.

Peak RSS is reported both as ``ru_maxrss`` (everything resident, file-backed pages included) and
as the peak of ``RssAnon`` sampled every batch (private memory; file pages of the store live in
the shared page cache and are reclaimable). Run: ``python bench/data_bench.py --n-videos 10790``.
The store is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extractors.recipes import get_recipe  # noqa: E402
from models.data.annotations import Segment, VideoAnnotation  # noqa: E402
from models.data.dataset import FeatureDataset, make_loader  # noqa: E402
from models.data.features import load_video_features  # noqa: E402
from models.data.store import FeatureStore  # noqa: E402


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-videos", type=int, default=10790)
    ap.add_argument("--t", type=int, default=224, help="max steps per video")
    ap.add_argument("--fixed-len", action="store_true", help="every video exactly --t steps (worst case)")
    ap.add_argument("--audio-dim", type=int, default=128)
    ap.add_argument("--visual-dim", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--n-ref", type=int, default=300, help="videos for the per-file np.load reference")
    ap.add_argument("--dir", default=None, help="where to build (default: a temp dir under tempfile.gettempdir())")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="data_bench.", dir=base))
    du = shutil.disk_usage(base)
    need = args.n_videos * args.t * (args.audio_dim + args.visual_dim) * 2
    print(f"disk free {du.free / 2**30:.1f} GiB at {base}; store needs <= {need / 2**30:.2f} GiB")
    if need * 1.1 > du.free:
        raise SystemExit("not enough disk space for this --n-videos; use a smaller one")

    rng = np.random.default_rng(0)
    if args.fixed_len:
        lengths = np.full(args.n_videos, args.t)
    else:  # UnAV-100 videos average ~42 s = ~130 steps; clip at T
        lengths = np.clip(rng.gamma(4.0, 130 / 4.0, args.n_videos).astype(int), 8, args.t)
    block_a = rng.standard_normal((args.t, args.audio_dim)).astype(np.float32)
    block_v = rng.standard_normal((args.t, args.visual_dim)).astype(np.float32)
    ids = [f"vid{i:05d}" for i in range(args.n_videos)]
    len_of = dict(zip(ids, lengths.tolist(), strict=True))

    def loader(vid: str) -> tuple[np.ndarray, np.ndarray]:
        n = len_of[vid]
        k = np.float32(int(vid[3:]) * 1e-3)  # distinct content per video, cheap to make
        return block_a[:n] + k, block_v[:n] + k

    rss0 = _status_kib("VmRSS")
    t0 = time.perf_counter()
    store = FeatureStore.build(work / "store", ids, loader)
    t_build = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (work / "store").iterdir())
    n_steps = int(lengths.sum())
    print(f"build: {args.n_videos} videos, {n_steps} steps, {size / 2**30:.2f} GiB on disk, "
          f"{t_build:.1f} s ({size / 2**20 / t_build:.0f} MiB/s)")

    recipe = get_recipe("unav100", t_max=args.t)
    anns = {v: VideoAnnotation(v, "train", float(len_of[v]) * recipe.step_s + 0.64,
                               [Segment(1.0, 5.0, "a"), Segment(3.0, 9.0, "b")]) for v in ids}
    ds = FeatureDataset(store, anns, ["a", "b"], recipe, t_max=args.t)
    dl = make_loader(ds, args.batch_size, shuffle=True, seed=0, num_workers=args.num_workers)
    peak_anon = _status_kib("RssAnon")
    t0 = time.perf_counter()
    n_items = 0
    checksum = 0.0
    for batch in dl:
        n_items += batch["audio"].shape[0]
        checksum += float(batch["visual"][:, 0, 0].sum())
        peak_anon = max(peak_anon, _status_kib("RssAnon"))
    t_epoch = time.perf_counter() - t0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"epoch: {n_items} items in {t_epoch:.1f} s ({n_items / t_epoch:.0f} videos/s, "
          f"{t_epoch / n_items * 1e3:.2f} ms/video, batch {args.batch_size}, workers {args.num_workers}); "
          f"checksum {checksum:.3f}")
    print(f"memory: start RSS {rss0 / 2**20:.2f} GiB, peak ru_maxrss {maxrss / 2**20:.2f} GiB, "
          f"peak RssAnon {peak_anon / 2**20:.2f} GiB")

    # reference: per-video float32 .npy files read with np.load (no store)
    n_ref = min(args.n_ref, args.n_videos)
    ref_root = work / "ref"
    for kind in ("i3d", "vggish"):
        (ref_root / "features" / kind).mkdir(parents=True)
    for v in ids[:n_ref]:
        a, vv = loader(v)
        np.save(ref_root / "features" / "vggish" / f"{v}.npy", a)
        np.save(ref_root / "features" / "i3d" / f"{v}.npy", vv)
    t0 = time.perf_counter()
    for v in ids[:n_ref]:
        load_video_features(v, ref_root)
    t_ref = (time.perf_counter() - t0) / n_ref
    t0 = time.perf_counter()
    for i in range(n_ref):
        ds[i]
    t_ds = (time.perf_counter() - t0) / n_ref
    print(f"reference (same process, {n_ref} videos, warm cache): per-file np.load fp32 {t_ref * 1e3:.2f} ms/video, "
          f"store+dataset item {t_ds * 1e3:.2f} ms/video, ratio store/reference {t_ds / t_ref:.2f}")
    if args.n_videos < 10790:
        scale = 10790 / args.n_videos
        print(f"extrapolated to 10,790 videos (linear): build {t_build * scale:.0f} s, epoch {t_epoch * scale:.0f} s, "
              f"disk {size * scale / 2**30:.1f} GiB")
    store.close()
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
