"""What the workflow's per-video jobs cost on top of the extraction work itself.

Three runs over the same N generated clips (demo recipe by default: random weights, Farneback flow,
so it runs on CPU in minutes), each from scratch:

1. reference, in this process: for every clip the media stage then the features stage
   (:func:`extractors.media.normalize`, :func:`extractors.extract.run_features`), networks built once;
2. ``snakemake --cores C`` on a config holding just these clips, targets = their feature files, with
   the resident extraction workers (the default; fresh workers, so their start-up is counted);
3. the same with ``AVLOC_WORKER=0``: one Python process per job (the per-process design).

It prints each wall time and its ratio to the reference (target: workers <= 1.15x).

    python bench/extract_overhead_bench.py [--n-clips 40] [--duration 3] [--cores 2] [--recipe demo]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractors.extract import run_features  # noqa: E402
from extractors.media import normalize  # noqa: E402
from extractors.recipes import get_recipe  # noqa: E402
from extractors.synthetic_videos import make_demo_dataset  # noqa: E402
from extractors.weight_loading import keep_networks_resident  # noqa: E402


def in_process(clips: list[Path], out: Path, recipe_name: str, threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    recipe = get_recipe(recipe_name)
    keep_networks_resident(True)
    t0 = time.perf_counter()
    for clip in clips:
        mp4, wav = out / "media" / f"{clip.stem}.mp4", out / "media" / f"{clip.stem}.wav"
        normalize(clip, mp4, wav, fps=recipe.fps)
        run_features(mp4=mp4, wav=wav, visual=recipe.visual, out_visual=out / recipe.visual / f"{clip.stem}.npy",
                     out_audio=out / "vggish" / f"{clip.stem}.npy", recipe=recipe,
                     weights_root=Path("resources/weights"), device="cpu", batch_size=8)
    wall = time.perf_counter() - t0
    keep_networks_resident(False)
    return wall


def through_snakemake(videos: Path, annotations: Path, work: Path, recipe_name: str, cores: int,
                      worker: bool) -> float:
    work.mkdir(parents=True)
    cfg = {"datasets": {"bench": {"videos": str(videos), "recipe": recipe_name, "annotations": str(annotations),
                                  "models": ["mil"]}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    visual = get_recipe(recipe_name).visual
    targets = [f"results/bench/features/{kind}/{p.stem}.npy" for p in sorted(videos.glob("*.mp4"))
               for kind in (visual, "vggish")]
    env = {**os.environ, "AVLOC_WORKER": "1" if worker else "0",
           "AVLOC_WORKER_DIR": tempfile.mkdtemp(prefix="w", dir="/tmp"), "AVLOC_WORKER_IDLE_S": "10"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work), "--configfile",
           str(work / "config.yaml"), "--workflow-profile", str(ROOT / "profiles" / "default"),
           "--cores", str(cores), *targets]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-clips", type=int, default=40)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per generated clip")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--recipe", default="demo")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="extract_overhead_"))
    make_demo_dataset(root / "data", n_videos=args.n_clips, duration_s=args.duration, seed=0)
    videos, annotations = root / "data" / "videos", root / "data" / "annotations.json"
    clips = sorted(videos.glob("*.mp4"))
    ref = in_process(clips, root / "inproc", args.recipe, args.cores)
    print(f"{len(clips)} clips x {args.duration:g} s, recipe {args.recipe}, {args.cores} cores", flush=True)
    print(f"in-process reference (networks built once)   {ref:7.1f} s  1.00x", flush=True)
    workers = through_snakemake(videos, annotations, root / "smk_workers", args.recipe, args.cores, worker=True)
    print(f"snakemake, resident workers                 {workers:7.1f} s  {workers / ref:.2f}x", flush=True)
    per_proc = through_snakemake(videos, annotations, root / "smk_perproc", args.recipe, args.cores, worker=False)
    print(f"snakemake, one process per job (AVLOC_WORKER=0) {per_proc:5.1f} s  {per_proc / ref:.2f}x", flush=True)
    print(json.dumps({"clips": len(clips), "reference_s": ref, "workers_s": workers, "per_process_s": per_proc,
                      "workers_ratio": workers / ref, "per_process_ratio": per_proc / ref}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
