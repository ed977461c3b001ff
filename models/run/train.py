"""The one training entry for every localizer in :data:`models.localizers.registry.MODELS`.

:func:`train` is a numbered driver over named steps -- :func:`build_run`, :func:`resume_run`, then per
epoch :func:`train_one_epoch`, :func:`validate_epoch` and :func:`save_checkpoint`, then a weak model's
decoder (:func:`models.run.decoder_selection.select_and_store`) -- and keeps the epoch of best validation
``avg`` mAP (mean over tIoU 0.1:0.9), computed with the code of :mod:`models.run.evaluate`. Files in ``out_dir``:

- ``config.json``: the run (model config, seed, selection split, recipe, versions);
- ``last.pt``: full state (model, EMA weights, optimizer, scheduler, grad scaler, RNG, history,
  best-so-far), written atomically after every epoch; ``resume=True`` continues from it;
- ``best.pt``: weights and config of the best epoch (the returned path), for a weak model with the decoder
  chosen on the selection split in ``config.decoder`` and its record in ``decoder``. Both checkpoints hold the class
  list and the recipe the training features were extracted with (``Recipe.to_dict()``), which
  :mod:`models.run.predict` extracts new videos with, and load with ``weights_only=True``;
- ``log.jsonl``: one record per epoch (loss and its terms, validation mAP, seconds, lr);
  ``curve.png``: loss and validation mAP per epoch (:func:`models.run.plots.plot_training_curve`).

AMP: autocast is used only on CUDA (bf16 where supported, else fp16 with a ``GradScaler``); the models
compute their losses in float32.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from extractors.io import write_text
from models.data.dataset import make_loader, trim_padding
from models.localizers.class_prior import fit_class_prior, mean_prior
from models.localizers.input_norm import fit_input_norm
from models.localizers.registry import build_model, get_entry, make_config
from models.run.controls import ShuffledLabels, video_labels
from models.run.decoder_selection import select_and_store
from models.run.ema import ModelEma
from models.run.evaluate import compute_dataset_metrics
from models.run.runtime import (
    CKPT_FORMAT,
    amp_settings,
    atomic_torch_save,
    dataset_model_fields,
    load_checkpoint,
    read_classes,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    to_device,
)
from models.run.selection import selection_split

#: per-epoch lines and in-epoch heartbeats: the rule's log and the console (models.run.pipeline.log_to_file)
progress_log = logging.getLogger("avloc.progress")
HEARTBEAT_S = 60.0  # a line at least this often inside a long epoch, so a full-size run never looks hung


def train(
    model_name: str,
    train_ds: Any,
    val_ds: Any | None,
    out_dir: str | os.PathLike[str],
    cfg_overrides: dict[str, Any] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    amp: bool = True,
    resume: bool = True,
    shuffle_labels: bool = False,
    num_workers: int = 0,
    grad_clip: float | None = None,
    eval_batch_size: int | None = None,
    progress: bool = True,
    plot_every: int = 10,
    holdout_frac: float = 0.1,
) -> Path:
    """Train ``model_name`` and return the path of the best checkpoint (see the module docstring).

    ``epochs``/``batch_size``/``lr`` default to the model config's ``epochs``/``batch_size``/``lr``
    (the paper's values for CLASP); ``num_classes``/``audio_dim``/``visual_dim``/``t_max`` are taken from
    ``train_ds`` unless given in ``cfg_overrides``. ``holdout_frac``: the share of the training videos
    held out for checkpoint selection when there is no validation set
    (:func:`models.run.selection.selection_split`).
    ``shuffle_labels``: the label-shuffled control (:mod:`models.run.controls`). ``curve.png`` is redrawn
    every ``plot_every`` epochs and at the end (0: never; drawing costs ~0.5 s).
    """
    # 1. the run: config, selection split, seeded model, EMA, optimizer; config.json
    run = build_run(model_name, train_ds, val_ds, Path(out_dir), cfg_overrides, epochs, batch_size, lr, seed,
                    device, amp, shuffle_labels, grad_clip, eval_batch_size, holdout_frac)
    # 2. an interrupted run of the same model, config, seed and selection split continues from last.pt
    if resume and (run.out_dir / "last.pt").exists():
        resume_run(run)
    _say(f"[{run.title}] training on {len(run.fit_ds)} videos, selecting on {run.selection['split']} "
         f"({len(run.sel_ds)} videos), epochs {run.start_epoch + 1}-{run.epochs} of {run.epochs}, "
         f"{run.steps_per_epoch} batches of {run.batch_size}, lr {run.lr:g}, {run.device}", progress)
    run_t0 = time.perf_counter()
    for epoch in range(run.start_epoch, run.epochs):
        # 3. one pass over the (shuffled, cropped) training videos
        rec = train_one_epoch(run, epoch, num_workers, progress)
        # 4. validation mAP of the weights that would be kept (the EMA when the recipe has one)
        rec.update(validate_epoch(run, amp))
        run.history.append(rec)
        # 5. best.pt when the score improves, last.pt always; the log, the curve, a line for the reader
        save_checkpoint(run, epoch, rec)
        write_text(run.out_dir / "log.jsonl", "".join(json.dumps(h, sort_keys=True) + "\n" for h in run.history))
        if plot_every and (epoch + 1) % plot_every == 0 and epoch + 1 < run.epochs:
            _plot_curve(run)
        _say(epoch_line(run.title, rec, run.epochs, run.best, run.selection, time.perf_counter() - run_t0,
                        epoch + 1 - run.start_epoch), progress)
    if plot_every and run.history:
        _plot_curve(run)
    best_path = run.out_dir / "best.pt"
    if not best_path.exists():
        raise FileNotFoundError(f"{best_path} missing: no epoch was trained (epochs={run.epochs}, "
                                f"already done {run.start_epoch})")
    # 6. a weak model's decoder, chosen on the same selection split (models.run.decoder_selection)
    select_and_store(best_path, run.info["config"].get("decoder"), run.sel_ds, run.selection["split"], run.device,
                     run.eval_batch_size, amp, say=lambda line: _say(f"[{run.title}] {line}", progress))
    return best_path


# --------------------------------------------------------------------------------------------
# 1. the run
# --------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What the steps of one training run share. ``info`` is ``config.json``; ``history`` and ``best``
    grow epoch by epoch and are checkpointed in ``last.pt``."""

    model_name: str
    title: str
    out_dir: Path
    info: dict[str, Any]
    classes: list[str] | None
    model: torch.nn.Module
    ema: ModelEma | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    fit_ds: Any
    sel_ds: Any
    device: torch.device
    amp_on: bool
    amp_dtype: torch.dtype
    eval_batch_size: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": -1, "score": -math.inf})
    start_epoch: int = 0

    @property
    def epochs(self) -> int:
        return int(self.info["epochs"])

    @property
    def batch_size(self) -> int:
        return int(self.info["batch_size"])

    @property
    def lr(self) -> float:
        return float(self.info["lr"])

    @property
    def selection(self) -> dict[str, Any]:
        return self.info["selection"]

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.fit_ds) / self.batch_size)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated, selected and written to ``best.pt``."""
        return self.ema.module if self.ema is not None else self.model


def build_run(model_name: str, train_ds: Any, val_ds: Any | None, out_dir: Path, cfg_overrides: dict[str, Any] | None,
              epochs: int | None, batch_size: int | None, lr: float | None, seed: int, device: str | torch.device,
              amp: bool, shuffle_labels: bool, grad_clip: float | None, eval_batch_size: int | None,
              holdout_frac: float) -> Run:
    """The model config, the selection split, the model (seeded, inputs standardised and class heads at
    the label prior where the config asks), its EMA, optimizer, scheduler and grad scaler; writes
    ``config.json``.

    Recipe fields are read from the model config when it has them (the pyramid models' recipe,
    :class:`models.localizers.pyramid.PyramidConfig`; other models keep their own defaults): ``grad_clip``
    (L2 norm clipping; the ``grad_clip`` argument overrides it), ``ema_decay`` (:class:`ModelEma`),
    ``crop_ratio`` / ``trunc_thresh`` (:func:`with_crop`; validation is never cropped).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    get_entry(model_name)
    cfg = make_config(model_name, **{**dataset_model_fields(train_ds), **(cfg_overrides or {})})
    epochs = int(epochs if epochs is not None else getattr(cfg, "epochs", 40))
    batch_size = int(batch_size if batch_size is not None else getattr(cfg, "batch_size", 16))
    lr = float(lr if lr is not None else getattr(cfg, "lr", 1e-4))
    dev = resolve_device(device)
    amp_on, amp_dtype = amp_settings(dev, amp)
    clip = grad_clip if grad_clip is not None else getattr(cfg, "grad_clip", None)
    ema_decay = getattr(cfg, "ema_decay", None)
    title = f"{model_name}{' (shuffled labels)' if shuffle_labels else ''}"
    classes = [str(c) for c in train_ds.classes] if hasattr(train_ds, "classes") else None
    # the recipe the features were extracted with, in every checkpoint: prediction extracts new videos with
    # it (models.run.predict) instead of trusting the user to name it again
    recipe = train_ds.recipe.to_dict() if getattr(train_ds, "recipe", None) is not None else None
    base_ds, sel_ds, selection = selection_split(train_ds, val_ds, holdout_frac, seed)
    uncropped = base_ds
    base_ds = with_crop(base_ds, getattr(cfg, "crop_ratio", None), getattr(cfg, "trunc_thresh", 0.5))

    seed_everything(seed)
    model = build_model(model_name, **dataclasses.asdict(cfg))
    if fit_input_norm(model, uncropped):  # input_norm='standardize': statistics of the training videos
        print(f"{title}: input features standardised with statistics of {len(uncropped)} training videos")
    train_labels = video_labels(uncropped)
    if fit_class_prior(model, train_labels):  # class_prior='label': weak class heads start at the label prior
        print(f"{title}: class heads start at the label prior of {len(uncropped)} training videos "
              f"(mean class frequency {mean_prior(train_labels):.4f})")
    model = model.to(dev)
    ema = ModelEma(model, ema_decay) if ema_decay else None
    supervision = getattr(model, "supervision", "weak")  # "weak", "full", or "step" (MIL's per-step ceiling)
    fit_ds = ShuffledLabels(base_ds, seed, with_segments=supervision != "weak") if shuffle_labels else base_ds
    steps_per_epoch = math.ceil(len(fit_ds) / batch_size)
    if hasattr(model, "configure_optimizers"):  # the model's own recipe (e.g. warm-up + cosine)
        optimizer, scheduler = model.configure_optimizers(lr, epochs, steps_per_epoch)
    else:
        optimizer, scheduler = torch.optim.Adam(model.parameters(), lr=lr), None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_on and amp_dtype == torch.float16)

    info = {
        "model_name": model_name, "config": dataclasses.asdict(cfg), "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "seed": seed, "shuffle_labels": shuffle_labels,
        "amp": bool(amp_on), "amp_dtype": str(amp_dtype).replace("torch.", ""), "device": str(dev),
        "n_train": len(base_ds), "n_val": len(sel_ds), "selection": selection, "grad_clip": clip,
        "ema_decay": ema_decay, "torch": torch.__version__, "recipe": recipe,
    }
    write_text(out_dir / "config.json", json.dumps(info, indent=1, sort_keys=True))
    return Run(model_name, title, out_dir, info, classes, model, ema, optimizer, scheduler, scaler, fit_ds, sel_ds,
               dev, amp_on, amp_dtype, int(eval_batch_size or batch_size))


def with_crop(ds: Any, crop_ratio: Sequence[float] | None, trunc_thresh: float) -> Any:
    """A shallow copy of a :class:`~models.data.dataset.FeatureDataset` whose items are randomly cropped."""
    if crop_ratio is None:
        return ds
    if not hasattr(ds, "crop_ratio"):
        raise TypeError(f"the model config asks for random cropping (crop_ratio={tuple(crop_ratio)}) but "
                        f"{type(ds).__name__} does not crop; pass crop_ratio=None in the model config")
    out = copy.copy(ds)
    out.crop_ratio = (float(crop_ratio[0]), float(crop_ratio[1]))
    out.trunc_thresh = float(trunc_thresh)
    return out


# --------------------------------------------------------------------------------------------
# 2. resume
# --------------------------------------------------------------------------------------------
def resume_run(run: Run) -> None:
    """Continue from ``last.pt``: weights, loss state, EMA, optimizer, scheduler, scaler, RNG state, history.

    The model, config, seed, control flag and selection split must be the stored ones (otherwise it
    refuses). Each epoch's shuffling has its own generator seeded from ``(seed, epoch)`` and the global
    RNG state (dropout, crops) is restored, so a resumed CPU run reproduces the uninterrupted one bit
    for bit (tested).
    """
    last_path = run.out_dir / "last.pt"
    ck = load_checkpoint(last_path)
    if ck["model_name"] != run.model_name or ck["config"] != run.info["config"]:
        raise ValueError(f"{last_path} was written for another model/config; use resume=False or "
                         f"another out_dir (stored {ck['model_name']!r}, {ck['config']})")
    if ck["run"]["seed"] != run.info["seed"] or ck["run"]["shuffle_labels"] != run.info["shuffle_labels"]:
        raise ValueError(f"{last_path}: seed/shuffle_labels differ from the stored run")
    if ck["run"].get("selection") != run.selection:
        raise ValueError(f"{last_path}: the checkpoint-selection split differs from the stored run")
    run.model.load_state_dict(ck["model"])
    if ck.get("loss_state") is not None:  # e.g. the pyramid models' EMA loss normaliser (not a tensor)
        for k, v in ck["loss_state"].items():
            setattr(run.model.loss_state, k, v)
    if run.ema is not None:
        run.ema.load_state_dict(ck["ema"])
    run.optimizer.load_state_dict(ck["optimizer"])
    if run.scheduler is not None and ck.get("scheduler") is not None:
        run.scheduler.load_state_dict(ck["scheduler"])
    if ck.get("scaler"):
        run.scaler.load_state_dict(ck["scaler"])
    set_rng_state(ck["rng"])
    run.history = list(ck["history"])
    run.best = dict(ck["best"])
    run.start_epoch = int(ck["epoch"]) + 1


# --------------------------------------------------------------------------------------------
# 3-5. one epoch: train, validate, checkpoint
# --------------------------------------------------------------------------------------------
def train_one_epoch(run: Run, epoch: int, num_workers: int = 0, progress: bool = True) -> dict[str, Any]:
    """One pass over the training videos in the order of a generator seeded from ``(seed, epoch)`` (the
    same whether or not the run was resumed); returns the epoch's record (mean loss and loss terms, lr,
    seconds)."""
    t0 = time.perf_counter()
    model, optimizer, scaler, dev = run.model, run.optimizer, run.scaler, run.device
    model.train()
    loader = make_loader(run.fit_ds, run.batch_size, shuffle=True, seed=run.info["seed"] * 100_003 + epoch,
                         num_workers=num_workers)
    tot, n_seen, terms_sum = 0.0, 0, {}
    bar = tqdm(loader, desc=f"{run.model_name} epoch {epoch + 1}/{run.epochs}", disable=not progress, leave=False)
    beat = t0
    for it, batch in enumerate(bar):
        if time.perf_counter() - beat >= HEARTBEAT_S and n_seen:
            beat = time.perf_counter()
            done = (beat - t0) / it
            progress_log.info("[%s] epoch %d/%d batch %d/%d loss %.4f, %.0f s in, epoch ETA %.0f s", run.title,
                              epoch + 1, run.epochs, it, run.steps_per_epoch, tot / n_seen, beat - t0,
                              done * (run.steps_per_epoch - it))
        if getattr(model, "pad_free", False):  # per-batch padding: cut to the longest video (trim_padding)
            batch = trim_padding(batch)
        batch = to_device(batch, dev)
        with torch.autocast(device_type=dev.type, dtype=run.amp_dtype, enabled=run.amp_on):
            out = model(batch)
            loss = model.loss(out, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {float(loss.detach())} at epoch {epoch + 1}, batch {it}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if run.info["grad_clip"]:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), run.info["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        if run.scheduler is not None:
            run.scheduler.step()
        if run.ema is not None:
            run.ema.update(model)
        bs = int(batch["labels"].shape[0])
        tot += float(loss.detach()) * bs
        n_seen += bs
        for k, v in (out.get("loss_terms") or {}).items():
            terms_sum[k] = terms_sum.get(k, 0.0) + float(v) * bs
        bar.set_postfix(loss=f"{tot / n_seen:.4f}")
    return {"epoch": epoch + 1, "train_loss": tot / max(n_seen, 1),
            "loss_terms": {k: v / max(n_seen, 1) for k, v in terms_sum.items()},
            "lr": float(optimizer.param_groups[0]["lr"]), "train_seconds": time.perf_counter() - t0}


def validate(model: torch.nn.Module, ds: Any, device: torch.device, batch_size: int,
             amp: bool = True) -> dict[str, Any]:
    """Validation mAP with the evaluation entry's code (no files written)."""
    metrics, _ = compute_dataset_metrics(model, ds, device=device, batch_size=batch_size, amp=amp)
    return metrics


def validate_epoch(run: Run, amp: bool = True) -> dict[str, Any]:
    """The epoch record's validation fields: ``val`` (Avg and per-tIoU mAP), ``val_split``, ``val_seconds``."""
    t1 = time.perf_counter()
    m = validate(run.eval_model, run.sel_ds, run.device, run.eval_batch_size, amp)
    return {"val": {"avg": m["avg"], **{f"mAP@{k}": v for k, v in m["reported"].items() if k != "avg"}},
            "val_split": run.selection["split"], "val_seconds": time.perf_counter() - t1}


def save_checkpoint(run: Run, epoch: int, rec: dict[str, Any]) -> None:
    """``best.pt`` (the selected weights, config, classes, recipe) when the validation score beats the best
    so far, and ``last.pt`` (everything :func:`resume_run` needs) after every epoch."""
    common = {"format": CKPT_FORMAT, "model_name": run.model_name, "config": run.info["config"],
              "classes": run.classes, "recipe": run.info["recipe"]}
    if rec["val"]["avg"] > run.best["score"]:
        run.best = {"epoch": epoch + 1, "score": float(rec["val"]["avg"])}
        atomic_torch_save({**common, "model": run.eval_model.state_dict(), "epoch": epoch, "metrics": rec,
                           "selection": run.selection, "ema": run.ema is not None}, run.out_dir / "best.pt")
    model, ema, scheduler, scaler = run.model, run.ema, run.scheduler, run.scaler
    atomic_torch_save({
        **common, "run": {k: run.info[k] for k in ("seed", "shuffle_labels", "epochs", "batch_size", "lr", "selection")},
        "model": model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "loss_state": dataclasses.asdict(model.loss_state) if hasattr(model, "loss_state") else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "rng": rng_state(), "history": run.history, "best": run.best, "epoch": epoch,
    }, run.out_dir / "last.pt")


# --------------------------------------------------------------------------------------------
# progress lines and the curve
# --------------------------------------------------------------------------------------------
def _say(line: str, progress: bool) -> None:
    """A progress line: above the tqdm bar when interactive, else to the progress log (rule log + console)."""
    if progress:
        tqdm.write(line)
    else:
        progress_log.info(line)


def epoch_line(title: str, rec: dict[str, Any], epochs: int, best: dict[str, Any], selection: dict[str, Any],
               elapsed_s: float, done_here: int) -> str:
    """One epoch as a user reads it: loss and its terms, validation score, best so far, seconds and ETA."""
    terms = " ".join(f"{k} {v:.4f}" for k, v in rec["loss_terms"].items())
    eta = elapsed_s / max(done_here, 1) * (epochs - rec["epoch"])
    return (f"[{title}] epoch {rec['epoch']}/{epochs} loss {rec['train_loss']:.4f}"
            + (f" ({terms})" if terms else "")
            + f" | {selection['split']} avg mAP {100 * rec['val']['avg']:.2f} (best {100 * best['score']:.2f} at epoch "
            f"{best['epoch']}) | {rec['train_seconds']:.0f} s train + {rec['val_seconds']:.0f} s val | ETA {eta:.0f} s")


def _plot_curve(run: Run) -> None:
    from models.run.plots import plot_training_curve  # matplotlib only when a curve is drawn

    plot_training_curve(run.out_dir / "curve.png", run.history, run.title)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def parse_kv(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON when possible (``true``, ``3``, ``0.1``)."""
    out: dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"--cfg expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def build_datasets(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from extractors.recipes import get_recipe
    from models.data.dataset import FeatureDataset
    from models.data.store import FeatureStore
    from models.data.unav import read_unav

    recipe = get_recipe(args.recipe)
    ann = read_unav(args.annotations)
    classes = read_classes(args.classes, ann)
    t_max = args.t_max or recipe.t_max
    train_ds = FeatureDataset(FeatureStore(args.store), ann, classes, recipe, subset=args.train_subset, t_max=t_max)
    val_ds = None
    if args.val_subset:
        val_ds = FeatureDataset(FeatureStore(args.val_store or args.store), ann, classes, recipe,
                                subset=args.val_subset, t_max=t_max)
    return train_ds, val_ds, recipe


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train a localizer (models.localizers.registry) on a feature store.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--store", required=True, help="FeatureStore of the training videos")
    ap.add_argument("--val-store", default=None, help="FeatureStore of the validation videos (default --store)")
    ap.add_argument("--annotations", required=True, help="UnAV/ActivityNet-style JSON")
    ap.add_argument("--classes", default=None, help="JSON list or one class per line (default: sorted labels)")
    ap.add_argument("--recipe", default="unav100")
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-subset", default="train")
    ap.add_argument("--val-subset", default="validation", help="'' to train without validation")
    ap.add_argument("--t-max", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--shuffle-labels", action="store_true", help="label-shuffled control run")
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--grad-clip", type=float, default=None, help="default: the model config's grad_clip")
    ap.add_argument("--holdout-frac", type=float, default=0.1,
                    help="share of train held out for checkpoint selection when there is no validation split")
    ap.add_argument("--cfg", nargs="*", default=[], help="model config overrides key=value")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    train_ds, val_ds, _ = build_datasets(args)
    best = train(args.model, train_ds, val_ds, Path(args.out), parse_kv(args.cfg), epochs=args.epochs,
                 batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
                 amp=not args.no_amp, resume=not args.no_resume, shuffle_labels=args.shuffle_labels,
                 num_workers=args.num_workers, grad_clip=args.grad_clip, progress=not args.no_progress,
                 holdout_frac=args.holdout_frac)
    print(best)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
