"""Dry-run time of the workflow against the number of videos, with the fitted growth exponent.

For each size N a work folder gets N symlinks (video ids from a UnAV-format annotation file, or
generated ids) to one short clip, a config with one UnAV-100 dataset (``recipe: unav100``, two
models), and ``snakemake -n`` runs twice: the first run probes every new file (reported as the
first-time probing cost), the second is the warm-cache dry run a user pays on every invocation.
The exponent is the slope of log(time) over log(N) between the smallest and the largest size; a
linear DAG gives about 1.

    python bench/dag_bench.py --annotations path/to/unav100_annotations.json --sizes 1000,4000,10790
    python bench/dag_bench.py --sizes 500,2000          # generated ids, no annotation file needed
    python bench/dag_bench.py --llp path/to/llp_csvs --sizes 1000,11849   # LLP's per-clip DAG (EAR)

``--llp`` takes a folder with LLP's five CSVs (``AVVP_train.csv``, ``AVVP_val_pd.csv``,
``AVVP_test_pd.csv``, ``AVVP_eval_audio.csv``, ``AVVP_eval_visual.csv``) and measures an ``avvp``
benchmark instead: ``N`` clips taken from the three splits in proportion, CSVs restricted to them,
random weights, EAR with pseudo-labels and video labels (one feature job per clip).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractors.synthetic_videos import make_demo_dataset  # noqa: E402


def video_ids(annotations: Path | None, n: int) -> list[str]:
    """The first ``n`` ids of the annotation file (sorted), or generated ones."""
    if annotations is None:
        return [f"vid_{i:06d}" for i in range(n)]
    ids = sorted(json.loads(annotations.read_text())["database"])
    if n > len(ids):
        raise SystemExit(f"{annotations} has {len(ids)} videos, fewer than {n}")
    return ids[:n]


def annotations_for(ids: list[str], annotations: Path | None, out: Path) -> Path:
    """A UnAV-format annotation file covering exactly ``ids`` (a slice of the real one when given)."""
    if annotations is not None:
        db = json.loads(annotations.read_text())["database"]
        sub = {v: db[v] for v in ids}
    else:
        subsets = ("train", "validation", "test")
        sub = {v: {"subset": subsets[i % 3], "duration": 5.0,
                   "annotations": [{"segment": [1.0, 3.0], "label": "tone", "label_id": 0}]}
               for i, v in enumerate(ids)}
    out.write_text(json.dumps({"database": sub}))
    return out


def make_workdir(root: Path, ids: list[str], clip: Path, annotations: Path | None) -> Path:
    work = root / f"n{len(ids)}"
    videos = work / "videos"
    videos.mkdir(parents=True)
    for vid in ids:
        os.symlink(clip, videos / f"{vid}.mp4")
    ann = annotations_for(ids, annotations, work / "annotations.json")
    cfg = {"datasets": {"unav": {"videos": str(videos), "recipe": "unav100", "annotations": str(ann),
                                 "models": ["clasp", "mil"], "train": {"epochs": 1}}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return work


LLP_SPLIT_CSVS = ("AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv")
LLP_EVAL_CSVS = ("AVVP_eval_audio.csv", "AVVP_eval_visual.csv")


def llp_ids(csv_dir: Path, n: int) -> dict[str, list[str]]:
    """``n`` clip ids from LLP's split CSVs, each split in proportion to its size (CSV order)."""
    rows = {f: [ln.split("\t")[0] for ln in (csv_dir / f).read_text().splitlines()[1:] if ln.strip()]
            for f in LLP_SPLIT_CSVS}
    total = sum(len(r) for r in rows.values())
    if n > total:
        raise SystemExit(f"{csv_dir} lists {total} clips, fewer than {n}")
    return {f: r[: max(1, round(n * len(r) / total))] for f, r in rows.items()}


def make_llp_workdir(root: Path, csv_dir: Path, n: int, clip: Path) -> Path:
    """Symlinked clips + the CSVs restricted to them + an ``avvp`` config (random weights, EAR)."""
    import numpy as np

    ids = llp_ids(csv_dir, n)
    work = root / f"llp{n}"
    videos, csvs = work / "videos", work / "csv"
    videos.mkdir(parents=True)
    csvs.mkdir()
    keep = {v for split in ids.values() for v in split}
    for vid in sorted(keep):
        os.symlink(clip, videos / f"{vid}.mp4")
    for f in (*LLP_SPLIT_CSVS, *LLP_EVAL_CSVS):
        lines = (csv_dir / f).read_text().splitlines()
        (csvs / f).write_text("\n".join([lines[0], *(ln for ln in lines[1:] if ln.split("\t")[0] in keep)]) + "\n")
    rng = np.random.default_rng(0)  # stage-1 dense data (the generator's 512-D spaces, 3 classes)
    np.savez(work / "dense.npz", audio=rng.standard_normal((6, 10, 512)).astype(np.float32),
             visual=rng.standard_normal((6, 10, 512)).astype(np.float32),
             av_labels=(rng.random((6, 10, 3)) < 0.3).astype(np.float32),
             text_a=rng.standard_normal((3, 512)).astype(np.float32),
             text_v=rng.standard_normal((3, 512)).astype(np.float32))
    cfg = {"datasets": {}, "avvp": {"llp": {
        "llp": {"videos": str(videos), "annotations": str(csvs), "visual": "r21d", "audio": "vggish",
                "weights": "random", "clip_model": "ViT-B-32"},
        "dense": str(work / "dense.npz"), "modes": ["pseudo", "video"]}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return work


def dry_run(work: Path) -> tuple[float, int]:
    """(wall seconds, number of jobs) of one ``snakemake -n``."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "-q", "rules", "--workflow-profile", "none",
           "-s", str(ROOT / "Snakefile"), "-d", str(work), "--configfile", str(work / "config.yaml")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"dry run failed for {work}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    total = 0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            total = int(parts[1])
    return wall, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--annotations", type=Path, default=None, help="UnAV-format JSON (ids to use)")
    ap.add_argument("--sizes", default="500,1000,2000", help="comma-separated numbers of videos")
    ap.add_argument("--clip", type=Path, default=None, help="clip every symlink points to (default: generated)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    ap.add_argument("--llp", type=Path, default=None, help="folder with LLP's CSVs: measure the avvp DAG instead")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    root = args.keep or Path(tempfile.mkdtemp(prefix="dag_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    clip = args.clip
    if clip is None:
        make_demo_dataset(root / "clip", n_videos=1, duration_s=3.0, seed=0)
        clip = next((root / "clip" / "videos").glob("*.mp4"))
    clip = clip.resolve()
    rows = []
    for n in sizes:
        if args.llp is not None:
            work = make_llp_workdir(root, args.llp, n, clip)
        else:
            work = make_workdir(root, video_ids(args.annotations, n), clip, args.annotations)
        cold, jobs = dry_run(work)
        warm, _ = dry_run(work)
        rows.append((n, jobs, cold, warm))
        print(f"{n:>6} videos  {jobs:>6} jobs  first run (probing) {cold:7.1f} s  warm dry run {warm:7.1f} s",
              flush=True)
    if len(rows) >= 2:
        (n0, _, _, t0), (n1, _, _, t1) = rows[0], rows[-1]
        exponent = math.log(t1 / t0) / math.log(n1 / n0)
        print(f"warm dry-run time ratio {n1}/{n0} videos: {t1 / t0:.2f}x for {n1 / n0:.2f}x videos "
              f"-> fitted exponent {exponent:.2f}")
    print(f"work folders: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
