"""The one training entry for every localizer in :data:`models.localizers.registry.MODELS`.

``train(model_name, train_ds, val_ds, out_dir, ...)`` builds the model by name, trains it with
Adam (or the model's own ``configure_optimizers(lr, epochs, steps_per_epoch)`` if it defines
one), evaluates on ``val_ds`` after each epoch with the same code as :mod:`models.run.evaluate`, and
keeps the best epoch by validation ``avg`` mAP (mean over tIoU 0.1:0.9).

Checkpoint selection: always on held-out videos, never on the test split (refused) and never on the
training loss.  With a validation split (UnAV-100 has one) that split is used; without one
(``val_ds=None`` or empty) a deterministic slice of ``holdout_frac`` of the training videos, drawn
with a generator seeded by ``seed``, is held out of training and used instead.  Which one was used
is recorded as ``selection: {split: 'validation' | 'train-holdout', n: ..., video_ids: [...]}`` in
``config.json``, ``best.pt``/``last.pt`` and (through the checkpoint) ``metrics.json``.

Recipe fields read from the model config when it has them (the pyramid models' recipe,
:class:`models.localizers.pyramid.PyramidConfig`; other models keep their own defaults):
``grad_clip`` (L2 norm clipping; the ``grad_clip`` argument overrides it), ``ema_decay``
(an exponential moving average of the weights, updated after every optimizer step, is what is
validated, selected and written to ``best.pt``, as UnAV/ActionFormer's ``ModelEma``: ttgeng233/UnAV
``train.py`` + ``libs/utils/train_utils.py``; the decay is capped by ``(1 + n) / (10 + n)`` after
``n`` updates, timm's EMA warm-up, so short runs do not evaluate near-initial weights -- at UnAV's
~15k steps the cap is above 0.999 after 9k steps and the final averages coincide), ``crop_ratio`` /
``trunc_thresh`` (random crop of every training video, see
:class:`models.data.dataset.FeatureDataset`; validation is never cropped).

Reproducibility and restarts
----------------------------
- Seeds: ``random``, NumPy and torch are seeded from ``seed``; each epoch's shuffling uses its
  own generator seeded from ``(seed, epoch)``, so the sample order of epoch ``e`` does not depend
  on whether the run was resumed.  The torch/NumPy/Python (and CUDA) RNG states are stored in
  every checkpoint and restored on resume, so dropout draws continue exactly; a resumed CPU run
  reproduces the uninterrupted one bit for bit (tested).
- ``out_dir/last.pt``: full state (model, EMA weights, optimizer, scheduler, grad scaler, RNG, history,
  best-so-far), written atomically after every epoch; it and ``best.pt`` also hold the class list
  (``classes``) and the recipe the training features were extracted with (``recipe``, ``Recipe.to_dict()``),
  which :mod:`models.run.predict` extracts new videos with; ``resume=True`` continues from it (the
  stored model name and config must match, otherwise it refuses).  ``out_dir/best.pt``: weights
  and config of the best epoch (the returned path).  Both load with ``weights_only=True``.
- ``out_dir/log.jsonl``: one record per epoch (loss and loss terms, validation mAP, seconds,
  lr); ``out_dir/curve.png``: loss and validation mAP per epoch (see ``plot_every``); ``out_dir/config.json``.

AMP: autocast is used only on CUDA (bf16 where supported, else fp16 with a ``GradScaler``);
losses are computed in float32 by the models.

Control experiment: ``shuffle_labels=True`` permutes the video-level labels (and, for fully
supervised models, the segment annotations) across the *training* videos with a permutation
seeded by ``seed``; validation is untouched.  A model that localizes from the features must
then fall to chance level.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from extractors.io import write_text
from models.localizers.class_prior import fit_class_prior, mean_prior
from models.localizers.input_norm import fit_input_norm
from models.localizers.registry import build_model, get_entry, make_config
from models.run.evaluate import compute_dataset_metrics
from models.run.runtime import (
    CKPT_FORMAT,
    VideoSubset,
    amp_settings,
    atomic_torch_save,
    dataset_model_fields,
    load_checkpoint,
    read_classes,
    resolve_device,
    to_device,
)

#: per-epoch lines and in-epoch heartbeats: the rule's log and the console (models.run.pipeline.log_to_file)
progress_log = logging.getLogger("avloc.progress")
HEARTBEAT_S = 60.0  # a line at least this often inside a long epoch, so a full-size run never looks hung


# --------------------------------------------------------------------------------------------
# label-shuffled control
# --------------------------------------------------------------------------------------------
def video_labels(ds: Any) -> torch.Tensor:
    """``(N, C)`` video-level multi-hot labels of ``ds`` in item order, from its annotations when it exposes
    them (no feature I/O), else from its items."""
    if all(hasattr(ds, a) for a in ("annotations", "video_ids", "cidx")) and not getattr(ds, "clip_labels", False):
        y = torch.zeros(len(ds.video_ids), len(ds.cidx), dtype=torch.float32)
        for i, vid in enumerate(ds.video_ids):
            for s in ds.annotations[vid].segments:
                y[i, ds.cidx[s.label]] = 1.0
        return y
    return torch.stack([torch.as_tensor(ds[i]["labels"], dtype=torch.float32) for i in range(len(ds))])


class ShuffledLabels(Dataset):
    """Training control: item ``i`` keeps its features but gets video ``perm[i]``'s labels.

    Labels are read from the dataset's annotations when it exposes them (no feature I/O); the
    segments are swapped too when ``with_segments`` (fully supervised models).
    """

    def __init__(self, ds: Any, seed: int, with_segments: bool = False) -> None:
        self.ds = ds
        n = len(ds)
        g = torch.Generator().manual_seed(int(seed) + 7919)
        self.perm = torch.randperm(n, generator=g).tolist()
        self.with_segments = with_segments
        self.labels = list(video_labels(ds))

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.ds[i])
        j = self.perm[i]
        item["labels"] = self.labels[j].clone()
        if self.with_segments:
            item["segments"] = self.ds[j]["segments"]
        return item

    def __getattr__(self, name: str) -> Any:  # classes, store, t_max, recipe ... of the wrapped set
        if name in ("ds", "perm", "labels", "with_segments"):
            raise AttributeError(name)
        return getattr(self.ds, name)


# --------------------------------------------------------------------------------------------
# held-out selection split, random crop, EMA
# --------------------------------------------------------------------------------------------
def holdout_split(ds: Any, frac: float, seed: int) -> tuple[VideoSubset, VideoSubset]:
    """(fit, held-out) subsets of ``ds``: ``max(1, round(frac * n))`` videos drawn by a generator seeded
    with ``seed`` (deterministic; independent of the global RNG, so resuming draws the same split)."""
    n = len(ds)
    if not 0.0 < frac < 1.0:
        raise ValueError(f"holdout_frac must be in (0, 1), got {frac}")
    k = max(1, int(round(frac * n)))
    if k >= n:
        raise ValueError(f"cannot hold out {k} of {n} training videos and still train")
    g = torch.Generator().manual_seed(int(seed) + 104_729)
    perm = torch.randperm(n, generator=g).tolist()
    held = sorted(perm[:k])
    fit = sorted(perm[k:])
    return VideoSubset(ds, fit), VideoSubset(ds, held)


def _check_not_test(ds: Any) -> None:
    anns = getattr(ds, "annotations", None)
    if not anns:
        return
    test = [v for v, a in anns.items() if getattr(a, "subset", None) == "test"]
    if test:
        raise ValueError(f"refusing to select checkpoints on the test split ({len(test)} test video(s) in the "
                         f"selection set, e.g. {test[:3]}); give a validation split or use holdout_frac")


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


class ModelEma:
    """Exponential moving average of every floating-point entry of a model's ``state_dict`` (integer
    buffers are copied), as UnAV/ActionFormer's ``ModelEma``, with timm's warm-up cap (module docstring)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        src = model.state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1.0 - d)
            else:
                v.copy_(src[k])

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "model": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.module.load_state_dict(state["model"])


# --------------------------------------------------------------------------------------------
# RNG state (weights_only-safe)
# --------------------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------
# evaluation used for model selection
# --------------------------------------------------------------------------------------------
def validate(model: torch.nn.Module, ds: Any, device: torch.device, batch_size: int,
             amp: bool = True) -> dict[str, Any]:
    """Validation mAP with the evaluation entry's code (no files written)."""
    metrics, _ = compute_dataset_metrics(model, ds, device=device, batch_size=batch_size, amp=amp)
    return metrics


# --------------------------------------------------------------------------------------------
# plotting / logging
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


def _write_log(out_dir: Path, history: list[dict[str, Any]]) -> None:
    write_text(out_dir / "log.jsonl", "".join(json.dumps(h, sort_keys=True) + "\n" for h in history))


def _plot_curve(out_dir: Path, history: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(ep, [h["train_loss"] for h in history], marker="o")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss")
    val = [(h["epoch"], h["val"]["avg"]) for h in history if h.get("val")]
    if val:
        ax[1].plot([e for e, _ in val], [100 * m for _, m in val], marker="o", color="C1")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("validation Avg mAP (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=".curve.", suffix=".png", dir=out_dir)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, out_dir / "curve.png")
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------------------------
# the training entry
# --------------------------------------------------------------------------------------------
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
    """Train ``model_name`` and return the path of the best checkpoint (see module docstring).

    ``curve.png`` is redrawn every ``plot_every`` epochs and at the end (0: never; drawing costs
    ~0.5 s).  ``epochs``/``batch_size``/``lr`` default to the model config's ``epochs``/``batch_size``/``lr``
    (the paper's values for CLASP).  ``num_classes``/``audio_dim``/``visual_dim``/``t_max`` are
    taken from ``train_ds`` unless given in ``cfg_overrides``.  ``holdout_frac``: the share of the
    training videos held out for checkpoint selection when there is no validation set.
    """
    from models.data.dataset import make_loader

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    get_entry(model_name)
    overrides = {**dataset_model_fields(train_ds), **(cfg_overrides or {})}
    cfg = make_config(model_name, **overrides)
    epochs = int(epochs if epochs is not None else getattr(cfg, "epochs", 40))
    batch_size = int(batch_size if batch_size is not None else getattr(cfg, "batch_size", 16))
    lr = float(lr if lr is not None else getattr(cfg, "lr", 1e-4))
    eval_bs = int(eval_batch_size or batch_size)
    dev = resolve_device(device)
    amp_on, amp_dtype = amp_settings(dev, amp)

    clip = grad_clip if grad_clip is not None else getattr(cfg, "grad_clip", None)
    ema_decay = getattr(cfg, "ema_decay", None)

    title = f"{model_name}{' (shuffled labels)' if shuffle_labels else ''}"
    classes = [str(c) for c in train_ds.classes] if hasattr(train_ds, "classes") else None
    # the recipe the features were extracted with, in every checkpoint: prediction extracts new videos with
    # it (models.run.predict) instead of trusting the user to name it again
    recipe = train_ds.recipe.to_dict() if getattr(train_ds, "recipe", None) is not None else None
    if val_ds is not None and len(val_ds):
        _check_not_test(val_ds)
        sel_ds, base_ds = val_ds, train_ds
        selection = {"split": "validation", "n": len(val_ds)}
    else:
        base_ds, sel_ds = holdout_split(train_ds, holdout_frac, seed)
        selection = {"split": "train-holdout", "n": len(sel_ds), "frac": float(holdout_frac),
                     "video_ids": list(sel_ds.video_ids)}
    uncropped = base_ds
    base_ds = with_crop(base_ds, getattr(cfg, "crop_ratio", None), getattr(cfg, "trunc_thresh", 0.5))
    _seed_everything(seed)
    model = build_model(model_name, **dataclasses.asdict(cfg))
    if fit_input_norm(model, uncropped):  # input_norm='standardize': statistics of the training videos
        print(f"{title}: input features standardised with statistics of {len(uncropped)} training videos")
    train_labels = video_labels(uncropped)
    if fit_class_prior(model, train_labels):  # class_prior='label': weak class heads start at the label prior
        print(f"{title}: class heads start at the label prior of {len(uncropped)} training videos "
              f"(mean class frequency {mean_prior(train_labels):.4f})")
    model = model.to(dev)
    ema = ModelEma(model, ema_decay) if ema_decay else None
    supervision = getattr(model, "supervision", "weak")
    fit_ds = ShuffledLabels(base_ds, seed, with_segments=supervision == "full") if shuffle_labels else base_ds
    steps_per_epoch = math.ceil(len(fit_ds) / batch_size)
    if hasattr(model, "configure_optimizers"):
        optimizer, scheduler = model.configure_optimizers(lr, epochs, steps_per_epoch)
    else:
        optimizer, scheduler = torch.optim.Adam(model.parameters(), lr=lr), None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_on and amp_dtype == torch.float16)

    run_info = {
        "model_name": model_name, "config": dataclasses.asdict(cfg), "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "seed": seed, "shuffle_labels": shuffle_labels,
        "amp": bool(amp_on), "amp_dtype": str(amp_dtype).replace("torch.", ""), "device": str(dev),
        "n_train": len(base_ds), "n_val": len(sel_ds), "selection": selection, "grad_clip": clip,
        "ema_decay": ema_decay, "torch": torch.__version__, "recipe": recipe,
    }
    write_text(out_dir / "config.json", json.dumps(run_info, indent=1, sort_keys=True))

    history: list[dict[str, Any]] = []
    best = {"epoch": -1, "score": -math.inf}
    start_epoch = 0
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume and last_path.exists():
        ck = load_checkpoint(last_path)
        if ck["model_name"] != model_name or ck["config"] != run_info["config"]:
            raise ValueError(f"{last_path} was written for another model/config; use resume=False or "
                             f"another out_dir (stored {ck['model_name']!r}, {ck['config']})")
        if ck["run"]["seed"] != seed or ck["run"]["shuffle_labels"] != shuffle_labels:
            raise ValueError(f"{last_path}: seed/shuffle_labels differ from the stored run")
        if ck["run"].get("selection") != selection:
            raise ValueError(f"{last_path}: the checkpoint-selection split differs from the stored run")
        model.load_state_dict(ck["model"])
        if ck.get("loss_state") is not None:  # e.g. the pyramid models' EMA loss normaliser (not a tensor)
            for k, v in ck["loss_state"].items():
                setattr(model.loss_state, k, v)
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None and ck.get("scheduler") is not None:
            scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"])
        history = list(ck["history"])
        best = dict(ck["best"])
        start_epoch = int(ck["epoch"]) + 1

    _say(f"[{title}] training on {len(fit_ds)} videos, selecting on {selection['split']} ({len(sel_ds)} videos), "
         f"epochs {start_epoch + 1}-{epochs} of {epochs}, {steps_per_epoch} batches of {batch_size}, lr {lr:g}, {dev}",
         progress)
    run_t0 = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.train()
        loader = make_loader(fit_ds, batch_size, shuffle=True, seed=seed * 100_003 + epoch,
                             num_workers=num_workers)
        tot, n_seen, terms_sum = 0.0, 0, {}
        bar = tqdm(loader, desc=f"{model_name} epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        beat = t0
        for it, batch in enumerate(bar):
            if time.perf_counter() - beat >= HEARTBEAT_S and n_seen:
                beat = time.perf_counter()
                done = (beat - t0) / it
                progress_log.info("[%s] epoch %d/%d batch %d/%d loss %.4f, %.0f s in, epoch ETA %.0f s", title,
                                  epoch + 1, epochs, it, steps_per_epoch, tot / n_seen, beat - t0,
                                  done * (steps_per_epoch - it))
            batch = to_device(batch, dev)
            with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=amp_on):
                out = model(batch)
                loss = model.loss(out, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss.detach())} at epoch {epoch + 1}, batch {it}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update(model)
            bs = int(batch["labels"].shape[0])
            tot += float(loss.detach()) * bs
            n_seen += bs
            for k, v in (out.get("loss_terms") or {}).items():
                terms_sum[k] = terms_sum.get(k, 0.0) + float(v) * bs
            bar.set_postfix(loss=f"{tot / n_seen:.4f}")
        train_s = time.perf_counter() - t0
        rec: dict[str, Any] = {
            "epoch": epoch + 1, "train_loss": tot / max(n_seen, 1),
            "loss_terms": {k: v / max(n_seen, 1) for k, v in terms_sum.items()},
            "lr": float(optimizer.param_groups[0]["lr"]), "train_seconds": train_s,
        }
        eval_model = ema.module if ema is not None else model
        t1 = time.perf_counter()
        m = validate(eval_model, sel_ds, dev, eval_bs, amp)
        rec["val"] = {"avg": m["avg"], **{f"mAP@{k}": v for k, v in m["reported"].items() if k != "avg"}}
        rec["val_split"] = selection["split"]
        rec["val_seconds"] = time.perf_counter() - t1
        score = m["avg"]
        history.append(rec)
        if score > best["score"]:
            best = {"epoch": epoch + 1, "score": float(score)}
            atomic_torch_save({"format": CKPT_FORMAT, "model_name": model_name, "config": run_info["config"],
                               "classes": classes, "recipe": recipe, "model": eval_model.state_dict(),
                               "epoch": epoch,
                               "metrics": rec, "selection": selection, "ema": ema is not None}, best_path)
        atomic_torch_save({
            "format": CKPT_FORMAT, "model_name": model_name, "config": run_info["config"], "classes": classes,
            "recipe": recipe,
            "run": {k: run_info[k] for k in ("seed", "shuffle_labels", "epochs", "batch_size", "lr", "selection")},
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "loss_state": dataclasses.asdict(model.loss_state) if hasattr(model, "loss_state") else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": _rng_state(), "history": history, "best": best, "epoch": epoch,
        }, last_path)
        _write_log(out_dir, history)
        if plot_every and (epoch + 1) % plot_every == 0 and epoch + 1 < epochs:
            _plot_curve(out_dir, history, title)
        _say(epoch_line(title, rec, epochs, best, selection, time.perf_counter() - run_t0, epoch + 1 - start_epoch),
             progress)
    if plot_every and history:
        _plot_curve(out_dir, history, title)
    if not best_path.exists():
        raise FileNotFoundError(f"{best_path} missing: no epoch was trained (epochs={epochs}, "
                                f"already done {start_epoch})")
    return best_path


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
