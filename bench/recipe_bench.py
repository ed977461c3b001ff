"""Training recipes of issue #15 measured against today's, on the planted benchmark (three seeds).

Two code trees train the same models on the same planted data (``models.data.synthetic``, the
``tests/test_compare.py`` benchmark: 4 classes, 120 videos of 32-48 steps, ``t_max = 48``):

- ``today``: the repository at ``--base`` (default ``7ccd2b2``, main just before the recipes were
  merged), exported with ``git archive`` into a temporary folder (the repository is not touched) --
  the recipe as it was: CCNet Adam without warm-up, DAVE's old blocks, no EMA, no crop, no clipping,
  no LayerNorm, CLASP and the weak pyramid models gated by their top-k training pool;
- ``new``: this checkout -- the pyramid recipe of :class:`models.localizers.pyramid.PyramidConfig`
  (AdamW, no decay on 1-D parameters, warm-up + cosine, clipping 1.0, EMA weights, random crop,
  LayerNorm, DAVE's UnAV blocks) and CLASP/MIL/weak CCNet/weak DAVE with the decoupled ``max`` class gate; plus CLASP with the
  paper's max MIL pooling (``pooling=max``) against the top-k default.

Every run: same data, same small width (``d_model = 32``: width 512 is the new default but is not
measurable on one CPU core in minutes -- the bench overrides it in *both* trees), same epochs (40, the
reference recipe's, with its 5 warm-up epochs), batch size (16) and learning rate (1e-3), selection on
the planted validation split, Avg mAP (tIoU 0.1:0.9) on the test split. A shorter ``--epochs`` keeps
the warm-up's share (5/40, at least 1 epoch) unless ``--literal-warmup``: at 10 epochs the pyramid
models are still warming up and the comparison says little. ``--ablate`` adds CCNet rows in the new
tree with one change reverted at a time. Each tree runs in its own single-threaded process (``--worker``), the two side by side, so they never share imported code.
Prints one table (mean +- sd over seeds, and the per-seed values) and the ordering check
``CCNet-full > DAVE-full > every weak model > every label-shuffled control`` for each tree (see
:func:`ordering` for which rows it ranks).

    python bench/recipe_bench.py                 # ~20 min on two cores (a 40-epoch pyramid run is ~45-90 s)
    python bench/recipe_bench.py --seeds 0 --epochs 12 --literal-warmup --ablate --rows \
        "ccnet (full), new - no EMA" "ccnet (full), new - no warm-up/cosine"   # one-change ablations
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

PYR = dict(d_model=32, head_dim=32, n_heads=2, tdm_dim=8, dropout=0.1, pre_nms_topk=200, max_seg_num=50)
WEAK = dict(hidden_dim=32)
CLASP = dict(hidden_dim=32, n_heads=2)
# (row label, model, overrides in both trees, overrides only in the new tree, shuffled control, trees)
RUNS: list[tuple[str, str, dict[str, Any], dict[str, Any], bool, tuple[str, ...]]] = [
    ("ccnet (full)", "ccnet", {**PYR, "supervision": "full"}, {}, False, ("today", "new")),
    ("dave (full)", "dave", {**PYR, "supervision": "full"}, {}, False, ("today", "new")),
    ("ccnet (weak)", "ccnet", {**PYR, "supervision": "weak"}, {}, False, ("today", "new")),
    ("dave (weak)", "dave", {**PYR, "supervision": "weak"}, {}, False, ("today", "new")),
    ("clasp (weak)", "clasp", CLASP, {}, False, ("today", "new")),
    ("clasp (weak, pooling=max)", "clasp", {**CLASP, "pooling": "max"}, {}, False, ("new",)),
    ("mil (weak)", "mil", WEAK, {}, False, ("today", "new")),
    ("ccnet (full, shuffled labels)", "ccnet", {**PYR, "supervision": "full"}, {}, True, ("today", "new")),
    ("clasp (weak, shuffled labels)", "clasp", CLASP, {}, True, ("today", "new")),
]
# --ablate: CCNet in the new tree with one recipe change reverted at a time (today's value)
ABLATIONS: dict[str, dict[str, Any]] = {
    "no EMA": {"ema_decay": None}, "no crop": {"crop_ratio": None}, "no clipping": {"grad_clip": None},
    "no LayerNorm": {"with_ln": False}, "no warm-up/cosine": {"warmup_epochs": 0},
    "Adam, decay on all": {"optimizer": "adam", "decay_1d": True},
}
PLANTED = dict(num_classes=4, n_videos=120, t_len=(32, 48), audio_dim=32, visual_dim=64, signal=3.0, seed=0)
T_MAX = 48


# ------------------------------------------------------------------------------------ worker side
def worker(spec: dict[str, Any]) -> None:
    """Train/evaluate every run of ``spec`` with the code on ``sys.path`` and print one JSON line each."""
    import torch

    torch.set_num_threads(1)
    from extractors.recipes import get_recipe
    from models.data.dataset import FeatureDataset
    from models.data.synthetic import PlantedConfig, make_planted
    from models.run.evaluate import compute_dataset_metrics
    from models.run.runtime import model_from_checkpoint
    from models.run.train import train

    recipe = get_recipe("unav100", t_max=T_MAX)
    tmp = Path(spec["tmp"])
    store, ann, classes = make_planted(PlantedConfig(**PLANTED), tmp / "data", recipe)
    ds = {s: FeatureDataset(store, ann, classes, recipe, subset=s, t_max=T_MAX)
          for s in ("train", "validation", "test")}
    for run in spec["runs"]:
        t0 = time.perf_counter()
        out = tmp / f"{run['key']}_s{run['seed']}"
        best = train(run["model"], ds["train"], ds["validation"], out, dict(run["cfg"]), epochs=spec["epochs"],
                     batch_size=16, lr=spec["lr"], seed=run["seed"], device="cpu", resume=False,
                     shuffle_labels=run["control"], progress=False, plot_every=0)
        model = model_from_checkpoint(best, run["model"])
        m, _ = compute_dataset_metrics(model, ds["test"], recipe, device="cpu", batch_size=16, amp=False)
        print(json.dumps({"row": run["row"], "seed": run["seed"], "avg": 100 * float(m["avg"]),
                          "seconds": time.perf_counter() - t0}), flush=True)


# ------------------------------------------------------------------------------------ driver side
def export_tree(rev: str, dest: Path) -> Path:
    """The files of commit ``rev`` under ``dest`` (``git archive``; the repository is only read)."""
    tar_path = dest / "tree.tar"
    with open(tar_path, "wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev], stdout=fh, check=True)
    root = dest / "tree"
    root.mkdir()
    with tarfile.open(tar_path) as tf:
        tf.extractall(root, filter="data")
    return root


def start_tree(name: str, root: Path, runs: list[dict[str, Any]], epochs: int, lr: float,
               tmp: Path) -> subprocess.Popen:
    """Start the worker process of one tree (one thread each, so the two trees run side by side)."""
    spec = {"runs": runs, "epochs": epochs, "lr": lr, "tmp": str(tmp / name)}
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "bench" / "recipe_bench.py"), "--worker", json.dumps(spec)]
    # output to files, not pipes: a full stderr pipe of one tree would stall it while we wait on the other
    (tmp / name).mkdir(parents=True, exist_ok=True)
    with open(tmp / name / "stdout.txt", "w") as out, open(tmp / name / "stderr.txt", "w") as err:
        return subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=err, text=True)  # the child keeps its copies


def finish_tree(name: str, proc: subprocess.Popen, tmp: Path) -> list[dict]:
    """Wait for a tree's worker and parse its JSON result lines."""
    proc.wait()
    stdout, stderr = ((tmp / name / f).read_text() for f in ("stdout.txt", "stderr.txt"))
    if proc.returncode:
        raise RuntimeError(f"{name} worker failed:\n{stderr[-4000:]}")
    rows = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
    for r in rows:
        r["tree"] = name
    return rows


def summarise(results: list[dict[str, Any]], seeds: list[int]) -> tuple[str, dict[str, dict[str, float]]]:
    means: dict[str, dict[str, float]] = {"today": {}, "new": {}}
    lines = ["| Method | today: Avg mAP (mean ± sd) | new: Avg mAP (mean ± sd) | today per seed | new per seed |",
             "|---|---|---|---|---|"]
    for row, *_ in RUNS:
        cells, per = [], []
        for tree in ("today", "new"):
            vals = [r["avg"] for s in seeds for r in results if r["row"] == row and r["tree"] == tree and r["seed"] == s]
            if not vals:
                cells.append("--")
                per.append("--")
                continue
            mu = statistics.fmean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            means[tree][row] = mu
            cells.append(f"{mu:.2f} ± {sd:.2f}")
            per.append(" / ".join(f"{v:.2f}" for v in vals))
        lines.append(f"| {row} | {cells[0]} | {cells[1]} | {per[0]} | {per[1]} |")
    return "\n".join(lines), means


def ordering(m: dict[str, float]) -> tuple[bool, str]:
    """CCNet-full > DAVE-full > every weak model > every shuffled control (on the seed means), over
    the models of the tables in their default configuration: rows that measure one option against
    the default (``pooling=max``) or an ablation (``new - ...``) are reported, not ranked."""
    m = {k: v for k, v in m.items() if " - " not in k and "=" not in k}
    if not ({"ccnet (full)", "dave (full)"} <= set(m)) or not any("(weak" in k for k in m):
        return False, "not enough rows for the ordering check"
    weak = {k: v for k, v in m.items() if "(weak" in k and "shuffled" not in k}
    ctrl = {k: v for k, v in m.items() if "shuffled" in k}
    cc, dv = m.get("ccnet (full)", float("nan")), m.get("dave (full)", float("nan"))
    checks = [("ccnet-full > dave-full", cc > dv), ("dave-full > max(weak)", dv > max(weak.values())),
              ("min(weak) > max(controls)", min(weak.values()) > max(ctrl.values(), default=float("-inf")))]
    return all(ok for _, ok in checks), ", ".join(f"{n}: {'yes' if ok else 'NO'}" for n, ok in checks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--base", default="7ccd2b2", help="commit of today's recipe (default: main before the recipes)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rows", nargs="*", default=None, help="only these row labels (default: all)")
    ap.add_argument("--ablate", action="store_true", help="also CCNet (new) with each change reverted alone")
    ap.add_argument("--literal-warmup", action="store_true",
                    help="5 warm-up epochs whatever --epochs is (default: 5/40 of --epochs, at least 1)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.ablate:
        RUNS.extend((f"ccnet (full), new - {name}", "ccnet", {**PYR, "supervision": "full", **over}, {}, False, ("new",))
                    for name, over in ABLATIONS.items())
    base = args.base
    warm = max(1, round(5 * args.epochs / 40))
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recipe_bench.") as td:
        tmp = Path(td)
        trees = {"today": export_tree(base, tmp), "new": REPO}
        procs: dict[str, tuple[subprocess.Popen, int]] = {}
        for tree, root in trees.items():
            runs = []
            for row, model, cfg, new_only, control, in_trees in RUNS:
                if tree not in in_trees or (args.rows and row not in args.rows):
                    continue
                full = {**cfg, **(new_only if tree == "new" else {})}
                # the 5 warm-up epochs are 1/8 of UnAV's 40; a short bench keeps that share (today's DAVE
                # had the same 5-epoch warm-up, today's CCNet none), unless --literal-warmup
                if model in ("ccnet", "dave") and (tree == "new" or model == "dave") and not args.literal_warmup:
                    full.setdefault("warmup_epochs", warm)
                runs += [{"row": row, "key": row.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
                          .replace("=", "-"), "model": model, "cfg": full, "control": control, "seed": s}
                         for s in args.seeds]
            if runs:
                procs[tree] = (start_tree(tree, root, runs, args.epochs, args.lr, tmp), len(runs))
        for tree, (proc, n) in procs.items():
            results += finish_tree(tree, proc, tmp)
            print(f"[{tree}] {n} runs done after {time.perf_counter() - t0:.0f} s", flush=True)
    table, means = summarise(results, args.seeds)
    print(f"\nplanted benchmark, Avg mAP % (tIoU 0.1:0.9), seeds {args.seeds}, {args.epochs} epochs, "
          f"warm-up {'5 epochs' if args.literal_warmup else f'{warm} epoch(s)'}, today = {base[:10]}\n")
    print(table)
    for tree in ("today", "new"):
        ok, txt = ordering(means[tree])
        print(f"\nordering ({tree}): {'HOLDS' if ok else 'BROKEN'} -- {txt}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"base": base, "seeds": args.seeds, "epochs": args.epochs,
                                              "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
