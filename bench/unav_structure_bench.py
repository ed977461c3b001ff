"""Do the weak localizers learn at UnAV-100's real structure? (issue #27; docs/recipes.md "Weak models at
UnAV-100's structure").

Builds the real-structure planted benchmark (:mod:`models.data.planted_real`: every video, length, subset,
class and segment of the real annotation file, or a seeded fraction of each subset; features planted per
segment), then trains each weak model with its recipe (CLASP and MIL: Adam 1e-4, batch 16, 40 epochs; the
weak pyramid models and AVEL with theirs) and its label-shuffled control, selects on validation, and
reports per epoch the loss terms and validation Avg mAP, and at the end:

    model | leaves the prior | test Avg mAP (control) | paper decoder | test video-level mAP (control) | oracle

Test Avg mAP is decoded with the decoder chosen on validation after training (models.run.decoder_selection;
its parameters in the last column); "paper decoder" decodes the same step scores with the paper's 0.5 rule.
The oracle goes through the same selection on validation.

The video-level mAP (:func:`models.run.evaluate.video_level_map`) ranks the test videos by each class's
video score: it shows whether a model has learnt the classes when its segments do not yet reach tIoU 0.5.

"Leaving the prior": the first epoch whose video-level BCE (CLASP's audio-visual term, the others' only
term) is below 95 % of the label prior's BCE, the loss of predicting each class's frequency for every
video. ``--legacy`` adds each model with the defaults before #27 (no LayerNorm in the projection, class
heads at 0.5) beside today's. Widths are a CPU-sized override (``--width``, default 128) in every row.

    python bench/unav_structure_bench.py --fraction 0.25                  # a quarter: 1,622 train videos
    python bench/unav_structure_bench.py --fraction 0.1 --epochs 12 --models clasp mil --legacy
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
    pyramid models' per-class TDM width (None: UnAV's 128, fixed whatever the model width)."""
    pyr = {"supervision": "weak", "d_model": width, "head_dim": width, "n_heads": 4,
           **({"tdm_dim": tdm_dim} if tdm_dim else {})}
    return {
        "clasp": ("clasp", {"hidden_dim": width}, "av"),
        "mil": ("mil", {"hidden_dim": width}, "video"),
        "avel-weak": ("avel", {"supervision": "weak"}, "mil_bce"),  # Tian's sizes are already CPU-sized
        "dave-weak": ("dave", pyr, "mil_bce"),
        "ccnet-weak": ("ccnet", pyr, "mil_bce"),
    }


def left_prior(history: list[dict[str, Any]], term: str, prior: float) -> int | None:
    """First epoch whose video-level BCE is below 95 % of the label prior's (None: never)."""
    for rec in history:
        value = rec["loss_terms"].get(term, rec["train_loss"])
        if value < 0.95 * prior:
            return int(rec["epoch"])
    return None


def time_steps(name: str, overrides: dict[str, Any], train_ds: Any, n: int, batch_size: int = 16) -> str:
    """CPU and wall seconds per training step (forward, loss, backward, Adam step) on the first ``n`` batches of
    ``train_ds``, and the epoch they add up to: how the weak pyramid models' speed was measured (issue #27)."""
    import torch

    from models.data.dataset import collate
    from models.localizers.input_norm import fit_input_norm
    from models.localizers.registry import build_model
    from models.run.runtime import dataset_model_fields

    torch.manual_seed(0)
    model = build_model(name, **{**dataset_model_fields(train_ds), **overrides}).train()
    fit_input_norm(model, train_ds)  # as models.run.train does (weak models standardise their inputs)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    batches = [collate([train_ds[i] for i in range(k * batch_size, min(len(train_ds), (k + 1) * batch_size))])
               for k in range(n)]
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        out = model(batch)
        loss = model.loss(out, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    wall, cpu = (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n
    per_epoch = -(-len(train_ds) // batch_size)
    return (f"{cpu:.2f} CPU s ({wall:.2f} s wall) per batch of {batch_size}, {per_epoch * cpu:.0f} CPU s per epoch "
            f"of {len(train_ds)} videos ({torch.get_num_threads()} threads)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotations", type=Path, default=DEFAULT_ANNOTATIONS)
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=None, help="default: each model's recipe (40)")
    ap.add_argument("--models", nargs="+", default=["clasp", "mil", "avel-weak", "dave-weak", "ccnet-weak"])
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--tdm-dim", type=int, default=None,
                    help="DAVE/CCNet per-class TDM width (default UnAV's 128; its cost is C x tdm_dim per step)")
    ap.add_argument("--signal", type=float, default=2.5)
    ap.add_argument("--visual-dim", type=int, default=2048, help="planted visual feature size (I3D: 2048)")
    ap.add_argument("--lr", type=float, default=None, help="default: each model's recipe")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--legacy", action="store_true", help="also train each model with the pre-#27 defaults")
    ap.add_argument("--no-control", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep the data and runs here (default: a temp dir)")
    ap.add_argument("--time-batches", type=int, default=0,
                    help="only time this many training steps of each model (CPU s per batch and per epoch) and exit")
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
        video_labels,
    )
    from models.data.unav import read_unav
    from models.localizers.decoding import WeakDecodeConfig, weak_decode_config
    from models.run.decoder_selection import decoder_maps, describe, select_decoder
    from models.run.evaluate import compute_dataset_metrics, video_level_map
    from models.run.runtime import model_from_checkpoint
    from models.run.train import train

    work = args.work or Path(tempfile.mkdtemp(prefix="unav_structure_"))
    recipe = get_recipe("unav100")
    cfg = RealPlantedConfig(fraction=args.fraction, signal=args.signal, seed=args.seed, visual_dim=args.visual_dim,
                            nnz_visual=max(8, args.visual_dim // 32))
    t0 = time.perf_counter()
    store, anns, classes = make_real_planted(read_unav(args.annotations), cfg, work / "data", recipe)
    ds = {s: FeatureDataset(store, anns, classes, recipe, subset=s) for s in ("train", "validation", "test")}
    prior = label_prior_bce(video_labels(anns, classes, "train"))
    print(f"benchmark: {args.fraction:g} of {args.annotations.name}: "
          + ", ".join(f"{s} {len(d)}" for s, d in ds.items())
          + f" videos, {len(classes)} classes; label-prior BCE {prior:.4f}; built in {time.perf_counter() - t0:.0f} s",
          flush=True)
    rows = model_rows(args.width, args.tdm_dim)
    if args.time_batches:
        for row in args.models:
            print(f"{row}: {time_steps(rows[row][0], rows[row][1], ds['train'], args.time_batches)}", flush=True)
        return 0
    pa, pv = planted_patterns(cfg, len(classes))
    oracle_model = MatchedFilter(pa, pv, cfg.signal).fit_background(ds["train"])
    paper = WeakDecodeConfig(mode="paper")
    oracle_dec, _ = select_decoder(oracle_model, ds["validation"], device="cpu", amp=False, say=print)
    oracle_maps = decoder_maps(oracle_model, ds["test"], {"paper": paper, "chosen": oracle_dec}, device="cpu", amp=False)
    oracle, oracle_paper = 100 * oracle_maps["chosen"], 100 * oracle_maps["paper"]
    print(f"matched-filter oracle: test Avg mAP {oracle:.1f} ({describe(oracle_dec)}), paper decoder {oracle_paper:.1f}",
          flush=True)

    results = []
    for row in args.models:
        name, over, term = rows[row]
        variants = [("", {})] + ([(" (pre-#27 defaults)", PYRAMID_LEGACY if name in ("dave", "ccnet") else LEGACY)]
                                 if args.legacy else [])
        for suffix, extra in variants:
            res: dict[str, Any] = {"row": row + suffix}
            for control in (False, True) if not args.no_control else (False,):
                out = work / "runs" / f"{row}{suffix.replace(' ', '_')}{'_shuffled' if control else ''}"
                t1 = time.perf_counter()
                best = train(name, ds["train"], ds["validation"], out, {**over, **extra}, epochs=args.epochs,
                             lr=args.lr, seed=args.seed, device="cpu", amp=False, resume=False, shuffle_labels=control,
                             progress=True, plot_every=0)
                history = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
                model = model_from_checkpoint(best, name)
                test = 100 * compute_dataset_metrics(model, ds["test"], recipe, device="cpu", amp=False)[0]["avg"]
                vmap = 100 * video_level_map(model, ds["test"], device="cpu")
                key = "control" if control else "test"
                res[key], res[key + "_video"] = test, vmap
                if not control and hasattr(model, "weak_outputs"):  # the same step scores, the paper's rule
                    res["paper"] = 100 * decoder_maps(model, ds["test"], {"paper": paper}, device="cpu", amp=False)["paper"]
                    res["decoder"] = describe(weak_decode_config(model.cfg.decoder))
                if not control:
                    res["left_prior"] = left_prior(history, term, prior)
                    res["best_epoch"] = max(history, key=lambda r: r["val"]["avg"])["epoch"]
                print(f"== {row}{suffix}{' shuffled' if control else ''}: test Avg mAP {test:.2f}, "
                      f"video-level mAP {vmap:.1f} "
                      f"({time.perf_counter() - t1:.0f} s)", flush=True)
            results.append(res)

    print(f"\nreal-structure planted UnAV-100, fraction {args.fraction:g} ({len(ds['train'])} train videos), "
          f"{args.visual_dim}-D visual, width {args.width}, tdm_dim {args.tdm_dim or 128}, signal {args.signal:g}, lr {args.lr or 'recipe'}, "
          f"epochs {args.epochs or 'recipe'}, label-prior BCE {prior:.4f}")
    print("| model | leaves the prior (epoch) | best val epoch | test Avg mAP | paper decoder | control | "
          "test video-level mAP | control | oracle Avg mAP (paper decoder) | decoder (chosen on validation) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ctrl = f"{r['control']:.2f}" if "control" in r else "–"
        vctrl = f"{r['control_video']:.1f}" if "control" in r else "–"
        print(f"| {r['row']} | {r['left_prior'] or 'never'} | {r['best_epoch']} | {r['test']:.2f} | "
              f"{r.get('paper', float('nan')):.2f} | {ctrl} | {r['test_video']:.1f} | {vctrl} | {oracle:.1f} "
              f"({oracle_paper:.1f}) | {r.get('decoder', '–')} |")
    print(json.dumps({"oracle": oracle, "oracle_paper": oracle_paper, "oracle_decoder": describe(oracle_dec),
                      "prior_bce": prior, "rows": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
