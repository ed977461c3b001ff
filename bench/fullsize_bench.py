"""UnAV-100's reproduction as a user runs it, at full size or a fraction: every cost of the chain, per rule
(issue #26, item 7; README "From released features" and docs/recipes.md "The reproduction at UnAV-100 size").

1. **Release.** Writes a planted feature release in the public UnAV-100 layout (flat ``<vid>_rgb.npy`` and
   ``<vid>_flow.npy``: float64 I3D, 1024-D each, as the release stores them; ``<vid>_vggish.npy``: float32
   128-D) for the real annotation file's videos with their real lengths in feature steps
   (:func:`models.data.planted_real.steps_for_duration`), all 10,790 or a seeded ``--fraction`` of each
   subset, with each annotated segment planted as its class pattern (:mod:`models.data.planted_real`), and
   the kept videos' entries of the annotation file beside it. Written video by video: the builder's memory
   does not grow with the release (about 24 GB at full size).
2. **Reproduction.** ``snakemake reproduce_unav100`` on a config with ``features: {from: <release>, layout:
   unav_release}`` and ``reproduce: {table: unav100, models: [...], seeds: [...]}``: the feature store, one
   train and one evaluate job per model, seed and label-shuffled control, the evaluator inputs and
   ``reproduce.md/.csv`` (mean ± std over the seeds beside the published row).
3. **Report.** From Snakemake's ``benchmarks/`` files (wall s, peak RSS, CPU s per job), the runs'
   ``log.jsonl`` / ``config.json`` (train s per epoch, videos/s, validation s) and the evaluate logs (the
   time spent drawing timelines, ``evaluate.max_timelines``: "timelines drawn: N / N in S s"): one table per fraction, each run's ratio to
   the reference run of the same process (the first model's first seed), and with several ``--fractions``
   each cost per video against the smallest fraction's (1.0 = linear in the number of videos).

Examples::

    # the CPU-sized run of the docs (2 cores): 1 % and 10 % of UnAV-100, CLASP and its control, three seeds
    python bench/fullsize_bench.py --fractions 0.01 0.1 --seeds 0 1 2 --epochs 2 --width 32 --lr 1e-3 --work /tmp/fsb
    python bench/fullsize_bench.py --fractions 0.01 0.1 --report --work /tmp/fsb   # print the kept run again
    # full size with the paper's schedule (a GPU node; 24 GB of disk for the release)
    python bench/fullsize_bench.py --fraction 1 --seeds 0 1 2 --work /scratch/unav_bench
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from extractors.recipes import get_recipe  # noqa: E402
from models.data.planted_real import RealPlantedConfig, iter_real_planted, select_fraction  # noqa: E402
from models.data.unav import read_unav  # noqa: E402

DEFAULT_ANNOTATIONS = REPO / "tests" / "data" / "unav100_annotations.json.gz"
DS = "unav"
I3D_HALF = 1024  # the release's RGB and flow files; load_video_features concatenates them to 2048


@dataclass
class ReleaseStats:
    """What building the release cost, and what it holds."""

    videos: int
    subsets: dict[str, int]
    steps: int  # feature steps over all videos
    bytes: int  # on disk
    seconds: float
    peak_rss_mb: float  # this process's peak; per video the builder holds one video's arrays


def peak_rss_mb() -> float:
    """This process's peak RSS so far (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_release(annotations: Path, out: Path, fraction: float = 1.0, seed: int = 0,
                  signal: float = 2.5) -> ReleaseStats:
    """Write ``out/av_features/`` (the release layout) and ``out/unav100_annotations.json`` (the kept videos'
    entries of ``annotations``, unchanged) for a seeded ``fraction`` of each subset of ``annotations``.

    Why the entries are copied rather than the whole file kept: videos without features would count as
    missed ground truth (docs/recipes.md "Missing videos at evaluation"), and a fraction's table would then
    measure the missing 90 % instead of the models."""
    t0 = time.perf_counter()
    recipe = get_recipe("unav100")
    anns = read_unav(annotations)
    kept = select_fraction(anns, fraction, seed)
    opener = gzip.open if str(annotations).endswith(".gz") else open
    with opener(annotations, "rt", encoding="utf-8") as fh:
        doc = json.load(fh)
    doc["database"] = {vid: entry for vid, entry in doc["database"].items() if vid in kept}
    feats = out / "av_features"
    feats.mkdir(parents=True, exist_ok=True)
    (out / "unav100_annotations.json").write_text(json.dumps(doc), encoding="utf-8")
    cfg = RealPlantedConfig(fraction=fraction, seed=seed, signal=signal, visual_dim=2 * I3D_HALF)
    steps = size = 0
    for vid, audio, visual in iter_real_planted(anns, cfg, recipe):
        files = {"rgb": visual[:, :I3D_HALF], "flow": visual[:, I3D_HALF:], "vggish": audio.astype(np.float32)}
        for kind, arr in files.items():
            path = feats / f"{vid}_{kind}.npy"
            np.save(path, arr)
            size += path.stat().st_size
        steps += len(audio)
    subsets: dict[str, int] = {}
    for a in kept.values():
        subsets[a.subset] = subsets.get(a.subset, 0) + 1
    return ReleaseStats(len(kept), dict(sorted(subsets.items())), steps, size, time.perf_counter() - t0,
                        peak_rss_mb())


def width_overrides(model: str, width: int | None) -> dict[str, Any]:
    """A CPU-sized width for one table model (``None``: the model's recipe)."""
    if width is None:
        return {}
    base = model.split("-")[0]
    if base in ("clasp", "mil"):
        return {"hidden_dim": width}
    if base in ("dave", "ccnet"):
        return {"d_model": width, "head_dim": width, "n_heads": 4}
    return {}  # AVEL: Tian's sizes are already CPU-sized


def write_config(work: Path, release: Path, args: argparse.Namespace) -> Path:
    """The config a user with the release writes (README "Starting from released features")."""
    train: dict[str, Any] = {"seed": args.seeds[0]}
    for key in ("epochs", "batch_size", "lr"):
        if getattr(args, key) is not None:
            train[key] = getattr(args, key)
    entry: dict[str, Any] = {
        "features": {"from": str(release / "av_features"), "layout": "unav_release"}, "recipe": "unav100",
        "annotations": str(release / "unav100_annotations.json"),
        "reproduce": {"table": "unav100", "models": list(args.models), "seeds": list(args.seeds),
                      "controls": not args.no_controls},
        "train": train, "evaluate": {"max_timelines": args.max_timelines},
    }
    overrides = {m: width_overrides(m, args.width) for m in args.models if width_overrides(m, args.width)}
    if overrides:
        entry["model_overrides"] = overrides
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump({"datasets": {DS: entry}}, sort_keys=False))
    return path


def snakemake_command(work: Path, config: Path, cores: int) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile",
            str(config), "--cores", str(cores), "--resources", "gpu=1", "--workflow-profile", "none",
            "reproduce_unav100"]


def read_benchmark(path: Path) -> dict[str, float]:
    """Snakemake's benchmark TSV: wall ``s``, ``max_rss`` (MB), ``cpu_time`` (s)."""
    with open(path, encoding="utf-8") as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))

    def num(key: str) -> float:
        try:
            return float(row.get(key, "nan"))
        except ValueError:  # "NA" when the job ended before a sample was taken
            return float("nan")

    return {"s": num("s"), "rss_mb": num("max_rss"), "cpu_s": num("cpu_time")}


# models.run.predict.plot_dataset_timelines: "drawing N of M test timelines", then its Heartbeat's last line
PLOT_START = re.compile(r"drawing (\d+) of (\d+) test timelines")
PLOT_DONE = re.compile(r"timelines drawn: (\d+) / \d+ in ([\d.]+) s")


def plot_time(log_text: str) -> tuple[int, int, float] | None:
    """(drawn, test videos, seconds) from an evaluate log; None when it has no plotting lines."""
    start, done = PLOT_START.findall(log_text), PLOT_DONE.findall(log_text)
    if not start or not done:
        return None
    return int(done[-1][0]), int(start[-1][1]), float(done[-1][1])


def collect(work: Path) -> list[dict[str, Any]]:
    """One row per job of the run: rule, run, wall s, peak RSS, CPU s, and the rule's own figures."""
    bench, res = work / "benchmarks" / DS, work / "results" / DS
    rows: list[dict[str, Any]] = []
    if (bench / "feature_store.tsv").exists():
        index = json.loads((res / "store" / "index.json").read_text())
        rows.append({"rule": "feature_store", "run": "", **read_benchmark(bench / "feature_store.tsv"),
                     "videos": len(index["video_ids"])})
    for tsv in sorted((bench / "train").glob("*.tsv")):
        run = tsv.stem
        info = json.loads((res / "models" / run / "config.json").read_text())
        hist = [json.loads(line) for line in (res / "models" / run / "log.jsonl").read_text().splitlines() if line]
        train_s = float(np.mean([h["train_seconds"] for h in hist]))
        rows.append({"rule": "train", "run": run, **read_benchmark(tsv), "seed": info["seed"],
                     "shuffled": info["shuffle_labels"], "epochs": len(hist), "videos": info["n_train"],
                     "s_per_epoch": train_s, "videos_per_s": info["n_train"] / train_s,
                     "cpu_per_epoch": read_benchmark(tsv)["cpu_s"] / len(hist),
                     "val_s": float(np.mean([h["val_seconds"] for h in hist])), "n_val": info["n_val"],
                     "best_val_avg": max(100 * h["val"]["avg"] for h in hist)})
    for tsv in sorted((bench / "evaluate").glob("*.tsv")):
        run = tsv.stem
        met = json.loads((res / "models" / run / "metrics.json").read_text())
        found = plot_time((work / "logs" / DS / "evaluate" / f"{run}.log").read_text())
        row = {"rule": "evaluate", "run": run, **read_benchmark(tsv), "videos": met.get("n_videos"),
               "avg": 100 * met["avg"]}
        if found:
            drawn, _, plot_s = found
            row.update(plots=drawn, plot_s=plot_s, plot_share=plot_s / row["s"])
        rows.append(row)
    for rule in ("unav_results", "reproduce"):
        for tsv in sorted((bench / rule).glob("*.tsv")) if (bench / rule).is_dir() else []:
            rows.append({"rule": rule, "run": tsv.stem, **read_benchmark(tsv)})
        if (bench / f"{rule}.tsv").exists():
            rows.append({"rule": rule, "run": "", **read_benchmark(bench / f"{rule}.tsv")})
    return rows


def job_stats(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table (rule -> count) from its console output."""
    counts: dict[str, int] = {}
    table = False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            table, counts = True, {}
        elif table:
            m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
            if m and m.group(1) != "total":
                counts[m.group(1)] = int(m.group(2))
            elif line.strip().startswith("total"):
                table = False
    return counts


def fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def print_rules(rows: list[dict[str, Any]]) -> None:
    """The per-job table, each train/evaluate row with its ratio to the reference run (the first train row)."""
    ref = {r["rule"]: r for r in reversed(rows) if r["rule"] in ("train", "evaluate")}
    print(f"{'rule':13s} {'run':24s} {'wall s':>8s} {'peak RSS MB':>11s} {'CPU s':>8s} {'videos':>6s} "
          f"{'s/epoch':>8s} {'videos/s':>8s} {'val s':>6s} {'plots s':>7s} {'plot %':>6s} {'x ref s':>7s} "
          f"{'x ref RSS':>9s}")
    for r in rows:
        base = ref.get(r["rule"])
        key = "s_per_epoch" if r["rule"] == "train" else "s"
        x_s = r[key] / base[key] if base else None
        x_rss = r["rss_mb"] / base["rss_mb"] if base else None
        print(f"{r['rule']:13s} {r['run'][:24]:24s} {fmt(r['s']):>8s} {fmt(r['rss_mb'], 0):>11s} "
              f"{fmt(r['cpu_s']):>8s} {fmt(r.get('videos')):>6s} {fmt(r.get('s_per_epoch')):>8s} "
              f"{fmt(r.get('videos_per_s')):>8s} {fmt(r.get('val_s')):>6s} {fmt(r.get('plot_s')):>7s} "
              f"{fmt(100 * r['plot_share'] if 'plot_share' in r else None, 0):>6s} {fmt(x_s, 2):>7s} "
              f"{fmt(x_rss, 2):>9s}")


def per_video_costs(run: dict[str, Any]) -> dict[str, float]:
    """Seconds per video of each stage (mean over the runs of a rule) and each rule's peak RSS, to compare
    fractions: a time per video that rises with the fraction grows faster than the dataset, an RSS that
    rises with it holds something per video."""
    rows = run["rules"]

    def mean(rule: str, key: str, per_video: bool = True) -> float:
        vals = [r[key] / (r["videos"] if per_video else 1) for r in rows
                if r["rule"] == rule and r.get("videos") and key in r]
        return float(np.mean(vals)) if vals else float("nan")

    return {"release s": run["release"]["seconds"] / run["release"]["videos"],
            "store s": mean("feature_store", "s"), "store RSS": mean("feature_store", "rss_mb", False),
            "train s/epoch": mean("train", "s_per_epoch"), "train CPU s": mean("train", "cpu_per_epoch"),
            "train RSS": mean("train", "rss_mb", False), "evaluate s": mean("evaluate", "s"),
            "evaluate CPU s": mean("evaluate", "cpu_s"), "evaluate RSS": mean("evaluate", "rss_mb", False)}


def print_scaling(runs: list[dict[str, Any]]) -> None:
    """Each cost per video (RSS: the peak itself) against the smallest fraction's."""
    ref = per_video_costs(runs[0])
    print(f"\nagainst fraction {runs[0]['fraction']:g} ({runs[0]['release']['videos']} videos): seconds per video "
          "(1.00 = linear in the number of videos, above: faster than it) and peak RSS (1.00 = bounded):")
    print(f"{'fraction':>8s} {'videos':>6s} " + " ".join(f"{k:>14s}" for k in ref))
    for run in runs:
        cost = per_video_costs(run)
        print(f"{run['fraction']:8g} {run['release']['videos']:6d} "
              + " ".join(f"{cost[k] / ref[k]:14.2f}" for k in ref))


def report(work: Path, fraction: float, release: dict[str, Any], wall: float | None, output: str) -> dict[str, Any]:
    """Print and return the figures of one finished run under ``work`` (also of an earlier run: ``--report``)."""
    jobs = job_stats(output)
    rows = collect(work)
    print(f"snakemake: exit 0 in {fmt(wall, 0) or '?'} s; jobs {jobs}")
    trains = [r for r in rows if r["rule"] == "train"]
    print("train jobs (one per model, seed and control): "
          + ", ".join(f"{r['run']} (seed {r['seed']}{', shuffled' if r['shuffled'] else ''})" for r in trains))
    print_rules(rows)
    md = (work / "results" / DS / "reproduce.md").read_text()
    print("\nreproduce.md, our rows:")
    for line in md.splitlines():
        if "ours: `" in line or "chance: `" in line or "| published |" in line and "CLASP (ours)" in line:
            print(line)
    return {"fraction": fraction, "work": str(work), "release": release, "snakemake_s": wall, "jobs": jobs,
            "rules": rows}


def run_fraction(fraction: float, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    work = root / f"fraction_{fraction:g}"
    release = work / "release"
    if args.report:
        stats = json.loads((work / "release_stats.json").read_text())
        out = (work / "snakemake.out").read_text()
        print(f"\n=== fraction {fraction:g}: the earlier run under {work}")
        return report(work, fraction, stats, stats.get("snakemake_s"), out)
    print(f"\n=== fraction {fraction:g}: building the release under {release}", flush=True)
    stats = build_release(args.annotations, release, fraction, args.data_seed, args.signal)
    print(f"release: {stats.videos} videos {stats.subsets}, {stats.steps} steps, {stats.bytes / 1e9:.2f} GB "
          f"in {stats.seconds:.1f} s, builder peak RSS {stats.peak_rss_mb:.0f} MB", flush=True)
    config = write_config(work, release, args)
    cmd = snakemake_command(work, config, args.cores)
    print("running:", shlex.join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (work / "snakemake.out").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-6000:])
        raise SystemExit(f"snakemake failed (exit {proc.returncode}); full output in {work / 'snakemake.out'}")
    (work / "release_stats.json").write_text(json.dumps({**asdict(stats), "snakemake_s": wall}), encoding="utf-8")
    return {**report(work, fraction, asdict(stats), wall, proc.stdout + proc.stderr), "command": shlex.join(cmd)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--fraction", type=float, default=None, help="share of each subset (default 1: all 10,790)")
    size.add_argument("--fractions", type=float, nargs="+", help="several sizes; the smallest is the reference")
    ap.add_argument("--models", nargs="+", default=["clasp"], help="models of the unav100 table")
    ap.add_argument("--no-controls", action="store_true", help="leave out the label-shuffled controls")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=None, help="default: each model's recipe (CLASP: 40)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--width", type=int, default=None, help="CPU-sized width (CLASP/MIL hidden_dim; default: recipe)")
    ap.add_argument("--max-timelines", type=int, default=200, help="evaluate.max_timelines (-1: every test video)")
    ap.add_argument("--signal", type=float, default=2.5, help="planted event amplitude (noise stds)")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the fraction and the planted features")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep the release and runs here (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="write every figure as JSON")
    ap.add_argument("--report", action="store_true", help="only print the figures of an earlier run kept in --work")
    args = ap.parse_args(argv)
    if args.max_timelines < 0:
        args.max_timelines = None
    fractions = sorted(args.fractions) if args.fractions else [args.fraction or 1.0]
    if args.report and args.work is None:
        ap.error("--report reads an earlier run: give its --work folder")
    with tempfile.TemporaryDirectory(prefix="fullsize_bench_") as tmp:
        root = args.work or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        runs = [run_fraction(f, args, root) for f in fractions]
        if len(runs) > 1:
            print_scaling(runs)
        if args.out:
            args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs},
                                           indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
