"""Do the weak localizers learn at UnAV-100's real structure? (issue #27; docs/recipes.md "Weak models at
UnAV-100's structure").

Builds the real-structure planted benchmark (:mod:`models.data.planted_real`: every video, length, subset,
class and segment of the real annotation file, or a seeded fraction of each subset; features planted per
segment), then trains each weak model with its recipe (CLASP and MIL: Adam 1e-4, batch 16, 40 epochs; the
weak pyramid models and AVEL with theirs) and its label-shuffled control, selects on validation, and
reports per epoch the loss terms and validation Avg mAP, and at the end one table (issue #31):

    model | top-k T/ | seeds | leaves the prior | best val epoch | val Avg mAP | test Avg mAP | paper decoder |
    control | test video-level mAP | control | distractors reported | ratio to best full | decoder

Test Avg mAP is decoded with the decoder chosen on validation after training (models.run.decoder_selection;
its parameters in the last column); "paper decoder" decodes the same step scores with the paper's 0.5 rule.
The oracle goes through the same selection on validation.
The release has single-modality distractors (``--distractors``, 1 per video by default: a class pattern in one
stream only, not annotated, listed in ``distractors.json``); "distractors reported" counts the test ones a
model reported as events (a prediction of the class with tIoU >= 0.5, models.run.metrics.distractors_reported).
The rows ``mil-step`` (MIL's network with per-step labels), ``ccnet-full`` and ``dave-full`` are the
full-supervision ceiling; each weak row's test Avg mAP is printed as a share of the best of them.
``--seeds 0 1`` trains every row per seed and prints the means; ``--topk-div 2 8`` trains each top-k ratio and
keeps the one of best validation Avg mAP (the others are printed; controls only for the chosen one).
``--time-batches N`` times N training steps per model, padded to t_max and trimmed to the longest video.
The table's columns are :data:`COLUMNS` (one entry per column).

The video-level mAP (:func:`models.run.evaluate.video_level_map`) ranks the test videos by each class's
video score: it shows whether a model has learnt the classes when its segments do not yet reach tIoU 0.5.

"Leaving the prior": the first epoch whose video-level BCE (CLASP's audio-visual term, the others' only
term) is below 95 % of the label prior's BCE, the loss of predicting each class's frequency for every
video. ``--legacy`` adds each model with the defaults before #27 (no LayerNorm in the projection, class
heads at 0.5) beside today's. Widths are a CPU-sized override (``--width``, default 128) in every row.

    python bench/unav_structure_bench.py --fraction 0.25                  # a quarter: 1,622 train videos
    python bench/unav_structure_bench.py --fraction 0.1 --epochs 12 --models clasp mil --legacy
    # issue #31: weak rows against the per-step ceiling, the top-k ratio chosen on validation, one thread
    python bench/unav_structure_bench.py --fraction 0.1 --visual-dim 512 --signal 3 --width 32 --lr 1e-3 --epochs 10 \
        --models clasp mil mil-step --topk-div 2 8 --threads 1
    # the CPU-sized table of docs/recipes.md: 512-D visual features, width 32, lr 1e-3
    python bench/unav_structure_bench.py --fraction 0.1 --visual-dim 512 --signal 3 --width 32 --lr 1e-3 --epochs 16
    # its DAVE-weak / CCNet-weak rows: UnAV's TDM is 100 x 128 channels per step, so a CPU-sized width 8, and
    # one thread on a shared machine (docs/recipes.md says why); --time-batches 2 only times training steps
    python bench/unav_structure_bench.py --fraction 0.1 --visual-dim 512 --signal 3 --width 32 --tdm-dim 8 \
        --lr 1e-3 --epochs 8 --threads 1 --models dave-weak ccnet-weak
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_ANNOTATIONS = REPO / "tests" / "data" / "unav100_annotations.json.gz"
LEGACY = {"proj_ln": False, "class_prior": "none", "input_norm": "none"}
PYRAMID_LEGACY = {"class_prior": "none", "input_norm": "none"}


def model_rows(width: int, tdm_dim: int | None = None) -> dict[str, tuple[str, dict[str, Any], str]]:
    """``{row: (registry name, overrides, loss term that is the video-level BCE)}``; ``tdm_dim`` overrides the
    pyramid models' per-class TDM width (None: UnAV's 128, fixed whatever the model width). Rows in FULL are
    the full-supervision ceiling (issue #31): MIL's network with per-step labels, CCNet and DAVE with segments."""
    pyr = {"d_model": width, "head_dim": width, "n_heads": 4, **({"tdm_dim": tdm_dim} if tdm_dim else {})}
    return {
        "clasp": ("clasp", {"hidden_dim": width}, "av"),
        "mil": ("mil", {"hidden_dim": width}, "video"),
        "avel-weak": ("avel", {"supervision": "weak"}, "mil_bce"),  # Tian's sizes are already CPU-sized
        "dave-weak": ("dave", {**pyr, "supervision": "weak"}, "mil_bce"),
        "ccnet-weak": ("ccnet", {**pyr, "supervision": "weak"}, "mil_bce"),
        "mil-step": ("mil", {"hidden_dim": width, "targets": "step"}, "step"),
        "ccnet-full": ("ccnet", {**pyr, "supervision": "full"}, ""),
        "dave-full": ("dave", {**pyr, "supervision": "full"}, ""),
    }


FULL = ("mil-step", "ccnet-full", "dave-full")
#: the top-k ratio field of each model's config (the sweep's --topk-div applies to the weak MIL pools only)
TOPK_FIELD = {"clasp": "topk_div", "mil": "topk_div", "avel-weak": "mil_topk_ratio", "dave-weak": "mil_topk_ratio",
              "ccnet-weak": "mil_topk_ratio"}


def left_prior(history: list[dict[str, Any]], term: str, prior: float) -> int | None:
    """First epoch whose video-level BCE is below 95 % of the label prior's (None: never)."""
    for rec in history:
        value = rec["loss_terms"].get(term, rec["train_loss"])
        if value < 0.95 * prior:
            return int(rec["epoch"])
    return None


def time_steps(name: str, overrides: dict[str, Any], train_ds: Any, n: int, batch_size: int = 16,
               trim: bool | None = None) -> tuple[float, str]:
    """(CPU s per step, a line) per training step (forward, loss, backward, Adam step) on the first ``n`` batches of
    ``train_ds``, and the epoch they add up to: how the weak pyramid models' speed was measured (issue #27).
    ``trim``: cut each batch to its longest video (models.data.dataset.trim_padding; None: as training does,
    for pad-free models), False: padded to t_max (before issue #31)."""
    import torch

    from models.data.dataset import collate, trim_padding
    from models.localizers.input_norm import fit_input_norm
    from models.localizers.registry import build_model
    from models.run.runtime import dataset_model_fields

    torch.manual_seed(0)
    model = build_model(name, **{**dataset_model_fields(train_ds), **overrides}).train()
    fit_input_norm(model, train_ds)  # as models.run.train does (weak models standardise their inputs)
    trim = getattr(model, "pad_free", False) if trim is None else trim
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    batches = [collate([train_ds[i] for i in range(k * batch_size, min(len(train_ds), (k + 1) * batch_size))])
               for k in range(n)]
    batches = [trim_padding(b) if trim else b for b in batches]
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        out = model(batch)
        loss = model.loss(out, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    wall, cpu = (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n
    per_epoch = -(-len(train_ds) // batch_size)
    steps = sum(b["audio"].shape[1] for b in batches) / n
    return cpu, (f"{cpu:.3f} CPU s ({wall:.3f} s wall) per batch of {batch_size} ({steps:.0f} steps), "
                 f"{per_epoch * cpu:.0f} CPU s per epoch of {len(train_ds)} videos ({torch.get_num_threads()} threads)")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of each numeric field of one row's runs (None where a run has none)."""
    out: dict[str, Any] = {**runs[0], "seeds": [r["seed"] for r in runs], "per_seed": runs}
    out.pop("seed")
    out["decoder"] = "; ".join(dict.fromkeys(r["decoder"] for r in runs if r.get("decoder"))) or None
    for k in ("test", "paper", "control", "test_video", "control_video", "distractors", "val", "best_epoch",
              "left_prior"):
        vals = [r.get(k) for r in runs]
        out[k] = None if any(v is None for v in vals) else sum(vals) / len(vals)
    return out


def _cell(r: dict[str, Any], key: str, spec: str = "") -> str:
    v = r.get(key)
    return "–" if v is None else format(v, spec)


#: the table: (header, cell of a summarised row given the best full row's test Avg mAP); extend here for new columns
COLUMNS: list[tuple[str, Any]] = [
    ("model", lambda r, full: r["row"]),
    ("top-k T/", lambda r, full: _cell(r, "topk_div")),
    ("seeds", lambda r, full: " ".join(str(s) for s in r.get("seeds", [])) or "–"),
    ("leaves the prior (epoch)", lambda r, full: _cell(r, "left_prior", ".0f")),
    ("best val epoch", lambda r, full: _cell(r, "best_epoch", ".0f")),
    ("val Avg mAP", lambda r, full: _cell(r, "val", ".2f")),
    ("test Avg mAP", lambda r, full: _cell(r, "test", ".2f")),
    ("paper decoder", lambda r, full: _cell(r, "paper", ".2f")),
    ("control", lambda r, full: _cell(r, "control", ".2f")),
    ("test video-level mAP", lambda r, full: _cell(r, "test_video", ".1f")),
    ("control", lambda r, full: _cell(r, "control_video", ".1f")),
    ("distractors reported", lambda r, full: f"{r['distractors']:.1f} / {r['n_distractors']}"
     if r.get("n_distractors") else "–"),
    ("ratio to best full", lambda r, full: f"{100 * r['test'] / full:.0f} %"
     if full and r.get("row") not in FULL and r.get("seeds") and r.get("test") is not None else "–"),
    ("decoder (chosen on validation)", lambda r, full: r.get("decoder") or "–"),
]


def print_table(results: list[dict[str, Any]], oracle: dict[str, Any]) -> None:
    """The markdown table of summarised rows, the oracle last (issue #31's columns)."""
    full = max([r["test"] for r in results if r["row"] in FULL], default=0.0)
    print("| " + " | ".join(h for h, _ in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in [*results, oracle]:
        print("| " + " | ".join(str(cell(r, full)) for _, cell in COLUMNS) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS)
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=None, help="default: each model's recipe (40)")
    ap.add_argument("--models", nargs="+", default=["clasp", "mil", "avel-weak", "dave-weak", "ccnet-weak", "mil-step"],
                    help=f"rows of {list(model_rows(1))}; {list(FULL)} are the full-supervision ceiling")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--tdm-dim", type=int, default=None,
                    help="DAVE/CCNet per-class TDM width (default UnAV's 128; its cost is C x tdm_dim per step)")
    ap.add_argument("--signal", type=float, default=2.5)
    ap.add_argument("--visual-dim", type=int, default=2048, help="planted visual feature size (I3D: 2048)")
    ap.add_argument("--distractors", type=float, default=1.0,
                    help="mean single-modality distractors per video (models.data.planted_real; 0: none)")
    ap.add_argument("--lr", type=float, default=None, help="default: each model's recipe")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the planted release")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds; the table shows the mean")
    ap.add_argument("--topk-div", type=int, nargs="+", default=None,
                    help="top-k ratio(s) T/k of the weak rows; several: each is trained and the one of best mean "
                         "validation Avg mAP is the row (the others are printed)")
    ap.add_argument("--legacy", action="store_true", help="also train each model with the pre-#27 defaults")
    ap.add_argument("--no-control", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep the data and runs here (default: a temp dir)")
    ap.add_argument("--time-batches", type=int, default=0,
                    help="only time this many training steps of each model (CPU s per batch and per epoch; pad-free "
                         "models padded to t_max and trimmed to the batch's longest video) and exit")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from extractors.recipes import get_recipe
    from models.data.dataset import FeatureDataset
    from models.data.planted_real import (
        MatchedFilter,
        RealPlantedConfig,
        label_prior_bce,
        make_real_planted,
        planted_patterns,
        read_distractors,
        video_labels,
    )
    from models.data.unav import read_unav
    from models.localizers.registry import make_config
    from models.run.decoder_selection import describe, select_decoder

    work = args.work or Path(tempfile.mkdtemp(prefix="unav_structure_"))
    recipe = get_recipe("unav100")
    cfg = RealPlantedConfig(fraction=args.fraction, signal=args.signal, seed=args.data_seed, visual_dim=args.visual_dim,
                            nnz_visual=max(8, args.visual_dim // 32), distractors_per_video=args.distractors)
    t0 = time.perf_counter()
    store, anns, classes = make_real_planted(read_unav(args.annotations), cfg, work / "data", recipe)
    ds = {s: FeatureDataset(store, anns, classes, recipe, subset=s) for s in ("train", "validation", "test")}
    prior = label_prior_bce(video_labels(anns, classes, "train"))
    test_dis = read_distractors(work / "data" / "distractors.json", ds["test"].annotations)
    print(f"benchmark: {args.fraction:g} of {args.annotations.name}: "
          + ", ".join(f"{s} {len(d)}" for s, d in ds.items())
          + f" videos, {len(classes)} classes, {len(test_dis)} test distractors; label-prior BCE {prior:.4f}; "
          f"built in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = model_rows(args.width, args.tdm_dim)
    if args.time_batches:
        for row in args.models:
            padded, line = time_steps(rows[row][0], rows[row][1], ds["train"], args.time_batches, trim=False)
            print(f"{row}, padded to t_max: {line}", flush=True)
            trimmed, line = time_steps(rows[row][0], rows[row][1], ds["train"], args.time_batches, trim=True)
            print(f"{row}, trimmed to the longest video: {line}; {padded / trimmed:.2f}x", flush=True)
        return 0
    pa, pv = planted_patterns(cfg, len(classes))
    oracle_model = MatchedFilter(pa, pv, cfg.signal).fit_background(ds["train"])
    oracle_dec, _ = select_decoder(oracle_model, ds["validation"], device="cpu", amp=False, say=print)
    oracle_model.cfg.decoder = oracle_dec  # the oracle goes through the same selection on validation
    oracle = {"row": "matched-filter oracle", **evaluate_row(oracle_model, ds, recipe, test_dis)}
    print(f"matched-filter oracle: test Avg mAP {oracle['test']:.1f} ({describe(oracle_dec)}), paper decoder "
          f"{oracle['paper']:.1f}, {oracle['distractors']} of {len(test_dis)} distractors reported", flush=True)

    results = []
    for row in args.models:
        name, over, term = rows[row]
        legacy = PYRAMID_LEGACY if name in ("dave", "ccnet") else LEGACY
        for suffix, extra in [("", {})] + ([(" (pre-#27 defaults)", legacy)] if args.legacy else []):
            field = TOPK_FIELD.get(row)
            ks = args.topk_div if (args.topk_div and field) else [None]
            candidates = []
            # a sweep trains each candidate without its control, then the control of the one chosen on validation
            sweep = len(ks) > 1
            for k in ks:
                run_over = {**over, **extra, **({field: k} if k else {})}
                k_used = getattr(make_config(name, **run_over), field) if field else None
                tag = f"{row}{suffix.replace(' ', '_')}_k{k_used}"
                runs = [train_row(name, run_over, term, ds, recipe, work / "runs" / f"{tag}_s{seed}", args, seed,
                                  prior, test_dis, (False,) if sweep else (False, True))
                        | {"row": row + suffix, "topk_div": k_used, "over": run_over, "tag": tag} for seed in args.seeds]
                candidates.append(summarise(runs))
            chosen = max(candidates, key=lambda r: r["val"])  # ties: the first --topk-div given
            if sweep:
                print(f"{row}{suffix}: top-k T/" + ", T/".join(f"{c['topk_div']} val {c['val']:.2f} test {c['test']:.2f}"
                                                         for c in candidates)
                      + f"; chosen on validation: T/{chosen['topk_div']}", flush=True)
                if not args.no_control:
                    chosen = summarise([r | train_row(name, r["over"], term, ds, recipe,
                                                      work / "runs" / f"{r['tag']}_s{r['seed']}", args, r["seed"],
                                                      prior, test_dis, (True,)) for r in chosen["per_seed"]])
            results.append(chosen)

    print(f"\nreal-structure planted UnAV-100, fraction {args.fraction:g} ({len(ds['train'])} train videos), "
          f"{args.distractors:g} distractors per video ({len(test_dis)} in test), {args.visual_dim}-D visual, "
          f"width {args.width}, tdm_dim {args.tdm_dim or 128}, signal {args.signal:g}, lr {args.lr or 'recipe'}, "
          f"epochs {args.epochs or 'recipe'}, label-prior BCE {prior:.4f}; Avg mAP in %, means over the seeds")
    print_table(results, oracle)
    print(json.dumps({"oracle": oracle, "prior_bce": prior, "rows": [{k: v for k, v in r.items() if k != "over"}
                                                                     for r in results]}, default=str))
    return 0


def evaluate_row(model: Any, ds: dict[str, Any], recipe: Any, test_dis: list) -> dict[str, Any]:
    """Test Avg mAP and video-level mAP (percent; the latter None for a model without step probabilities, the
    full pyramid models) and the distractors reported as events."""
    from models.localizers.decoding import WeakDecodeConfig, weak_decode_config
    from models.run.decoder_selection import decoder_maps, describe
    from models.run.evaluate import compute_dataset_metrics, video_level_map
    from models.run.metrics import distractors_reported

    metrics, named = compute_dataset_metrics(model, ds["test"], recipe, device="cpu", amp=False)
    try:
        vmap = 100 * video_level_map(model, ds["test"], device="cpu")
    except KeyError:
        vmap = None
    row = {"test": 100 * metrics["avg"], "test_video": vmap, "distractors": distractors_reported(named, test_dis),
           "n_distractors": len(test_dis)}
    if hasattr(model, "weak_outputs"):  # the same step scores through the paper's rule, and the decoder chosen
        paper = WeakDecodeConfig(mode="paper")
        row["paper"] = 100 * decoder_maps(model, ds["test"], {"paper": paper}, device="cpu", amp=False)["paper"]
        row["decoder"] = describe(weak_decode_config(model.cfg.decoder))
    return row


def train_row(name: str, over: dict[str, Any], term: str, ds: dict[str, Any], recipe: Any, out: Path,
              args: argparse.Namespace, seed: int, prior: float, test_dis: list,
              which: tuple[bool, ...] = (False, True)) -> dict[str, Any]:
    """One seed of one row: the model (``which`` holds False) and (True; not with --no-control) its label-shuffled
    control, each selected on validation."""
    from models.run.runtime import model_from_checkpoint
    from models.run.train import train

    res: dict[str, Any] = {"seed": seed}
    for control in [c for c in which if not (c and args.no_control)]:
        where = out.with_name(out.name + ("_shuffled" if control else ""))
        t1 = time.perf_counter()
        best = train(name, ds["train"], ds["validation"], where, over, epochs=args.epochs, lr=args.lr, seed=seed,
                     device="cpu", amp=False, resume=False, shuffle_labels=control, progress=True, plot_every=0)
        history = [json.loads(ln) for ln in (where / "log.jsonl").read_text().splitlines()]
        ev = evaluate_row(model_from_checkpoint(best, name), ds, recipe, test_dis)
        if control:
            res["control"], res["control_video"] = ev["test"], ev["test_video"]
        else:
            res.update(ev)
            res["left_prior"] = left_prior(history, term, prior) if term else None
            top = max(history, key=lambda r: r["val"]["avg"])
            res["best_epoch"], res["val"] = top["epoch"], 100 * top["val"]["avg"]
        print(f"== {out.name}{' shuffled' if control else ''}: test Avg mAP {ev['test']:.2f}, video-level mAP "
              f"{ev['test_video'] if ev['test_video'] is None else round(ev['test_video'], 1)}, distractors reported "
              f"{ev['distractors']} / {len(test_dis)} ({time.perf_counter() - t1:.0f} s)", flush=True)
    return res


if __name__ == "__main__":
    raise SystemExit(main())
