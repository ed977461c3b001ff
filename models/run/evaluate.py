"""The one evaluation entry for every localizer: checkpoint + dataset -> predictions.json, metrics.json.

Per batch the model's ``detect(out, batch)`` gives events in continuous feature-step units
(:mod:`models.localizers.base`); :func:`models.localizers.postprocess.step_events_to_seconds` maps them to seconds with
the recipe (``center_offset_s + x * step_s``, cells extended to 0 s at the start and, for videos
that were not clipped to ``t_max``, to the duration at the end; clipped to ``[0, duration]``).
Scores are ranked by ``models.run.metrics.compute_map`` (UnAV/ActionFormer rules, docs/recipes.md "Evaluation")
against the dataset's *full* annotations.

Full length (``full_length=True``, the default, also for validation during training): every video is
evaluated over its whole length, never clipped at the training ``t_max``.  Each localizer here takes
any length natively (masks, resampled position codes and CCNet's resampled ``W_u``; UnAV/ActionFormer
likewise run whole test videos at once, interpolating their position embedding), so a video longer
than ``t_max`` is one input of its own length; videos are batched in order of length and each batch
is padded only to ``max(t_max, longest video in it)``, so videos up to ``t_max`` are seen exactly as
in training; a ``pad_free`` model (MIL, CLASP: valid-step outputs independent of the padding) gets the
batch cut to its longest video, as it trains (:func:`models.data.dataset.trim_padding`).  ``full_length=False`` clips to ``t_max`` (the old behaviour: ground truth beyond it is
missed).

Outputs in ``out_dir``: ``predictions.json`` (ActivityNet results format, seconds, class names)
and ``metrics.json`` (mAP per tIoU, ``avg`` over 0.1:0.9, the papers' 0.5:0.9 columns, per-class
AP, model name, checkpoint, number of videos and predictions).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extractors.io import write_text
from models.run.runtime import (
    VideoSubset,
    amp_settings,
    load_checkpoint,
    model_from_checkpoint,
    read_classes,
    resolve_device,
    to_device,
)


def full_length_view(ds: Any) -> tuple[Any, int]:
    """(a view of ``ds`` whose items are unclipped, sorted by length, longest first; the training ``t_max``).

    ``ds`` is a :class:`models.data.dataset.FeatureDataset` or a :class:`VideoSubset` of one."""
    if isinstance(ds, VideoSubset):
        inner, t_max = full_length_view(ds.ds)
        base = inner.ds  # the unclipped copy under the sorted view
        order = sorted(ds.indices, key=lambda i: -_video_length(base, base.video_ids[i]))
        return VideoSubset(base, order), t_max
    if not (hasattr(ds, "store") and hasattr(ds, "t_max") and hasattr(ds, "crop_ratio")):
        raise TypeError(f"full-length evaluation needs a FeatureDataset (or a subset of one), got "
                        f"{type(ds).__name__}; pass full_length=False to clip at t_max")
    full = copy.copy(ds)
    full.crop_ratio = None
    lengths = [_video_length(ds, v) for v in ds.video_ids]
    full.t_max = max([int(ds.t_max), *lengths])
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return VideoSubset(full, order), int(ds.t_max)


def _video_length(ds: Any, vid: str) -> int:
    lengths = getattr(ds, "_lengths_by_id", None)
    if lengths is None:
        lengths = dict(zip(ds.store.video_ids, (int(n) for n in ds.store.lengths), strict=True))
        ds._lengths_by_id = lengths
    return lengths[vid]


@torch.no_grad()
def iter_outputs(model: torch.nn.Module, ds: Any, device: str | torch.device = "auto", batch_size: int = 16,
                 amp: bool = True, full_length: bool = True) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(batch, model output)`` over ``ds`` in eval mode, as prediction sees them (full length, length-sorted
    batches trimmed to their longest video); also what decoder selection computes its step scores with."""
    from models.data.dataset import make_loader, trim_padding

    dev = resolve_device(device)
    amp_on, amp_dtype = amp_settings(dev, amp)
    t_min = None
    if full_length:
        ds, t_min = full_length_view(ds)
    was_training = model.training
    model.eval()
    try:
        for batch in make_loader(ds, batch_size, shuffle=False):
            if t_min is not None:  # a pad-free model sees its batch cut to the longest video in it
                longest = int(batch["mask"].sum(dim=1).max())
                batch = trim_padding(batch, longest if getattr(model, "pad_free", False) else max(t_min, longest))
            batch = to_device(batch, dev)
            with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=amp_on):
                out = model(batch)
            yield batch, out
    finally:
        model.train(was_training)


def valid_and_clipped(batch: dict[str, Any]) -> list[tuple[int, bool]]:
    """Per video of a batch: (valid steps, whether it was clipped to ``t_max``; then its last cell is not
    extended to the duration, :func:`models.localizers.postprocess.step_events_to_seconds`)."""
    valid = batch["mask"].sum(dim=1).tolist()
    lengths = batch["lengths"].tolist() if "lengths" in batch else valid
    return [(int(n), int(t) > int(n)) for n, t in zip(valid, lengths, strict=True)]


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, ds: Any, recipe: Any | None = None, device: str | torch.device = "auto",
                    batch_size: int = 16, amp: bool = True, progress: bool = False, full_length: bool = True,
                    ) -> dict[str, list[tuple[float, float, int, float]]]:
    """``{video_id: [(start_s, end_s, class_index, score)]}`` for every video of ``ds`` (module docstring)."""
    from models.localizers.postprocess import step_events_to_seconds
    from models.run.progress import Heartbeat

    recipe = recipe if recipe is not None else ds.recipe
    preds: dict[str, list[tuple[float, float, int, float]]] = {}
    beat = Heartbeat("predict: videos", len(ds)) if progress else None
    for batch, out in iter_outputs(model, ds, device, batch_size, amp, full_length):
        dets = model.detect(out, batch)
        for b, (vid, (n, clipped)) in enumerate(zip(batch["video_ids"], valid_and_clipped(batch), strict=True)):
            dur = float(batch["durations"][b])
            preds[vid] = step_events_to_seconds(dets[b], recipe, None if clipped else n, dur)
        if beat is not None:
            beat.tick(len(batch["video_ids"]))
    if beat is not None:
        beat.finish()
    return preds


def video_scores(out: dict[str, Any], mask: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` video-level class probabilities of a weak model's output: its MIL-pooled ``video_p`` when
    it has one (CLASP, MIL), else the highest valid step probability (AVEL, the weak pyramid models)."""
    if "video_p" in out:
        return out["video_p"].float()
    steps = out["step_probs"] if "step_probs" in out else out["p_av"]
    m = mask[:, : steps.shape[1]].bool().unsqueeze(-1)
    return steps.float().masked_fill(~m, 0.0).amax(dim=1)


@torch.no_grad()
def video_level_map(model: torch.nn.Module, ds: Any, device: str | torch.device = "auto",
                    batch_size: int = 16) -> float:
    """Mean over the classes present in ``ds`` of the average precision of ranking its videos by the model's
    video-level score (:func:`video_scores`), in [0, 1].

    Why beside the detection mAP: it asks only "which classes are in this video", so it shows whether a weak
    model has learnt the classes at all when its segments do not yet reach a tIoU of 0.5 (docs/recipes.md,
    "Weak models at UnAV-100's structure"). Non-interpolated AP over all videos, ties broken by video order.
    """
    from models.data.dataset import make_loader, trim_padding

    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    scores, labels = [], []
    try:
        for batch in make_loader(ds, batch_size, shuffle=False):
            if getattr(model, "pad_free", False):
                batch = trim_padding(batch)
            labels.append(batch["labels"].float())
            batch = to_device(batch, dev)
            scores.append(video_scores(model(batch), batch["mask"]).cpu())
    finally:
        model.train(was_training)
    y, p = torch.cat(labels).numpy(), torch.cat(scores).numpy()
    aps = []
    for c in np.nonzero(y.any(axis=0))[0]:
        order = np.argsort(-p[:, c], kind="stable")
        hits = y[order, c] > 0
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append(float(precision[hits].mean()))
    return float(np.mean(aps)) if aps else 0.0


def compute_dataset_metrics(model: torch.nn.Module, ds: Any, recipe: Any | None = None,
                            device: str | torch.device = "auto", batch_size: int = 16, amp: bool = True,
                            progress: bool = False, full_length: bool = True,
                            ) -> tuple[dict[str, Any], dict[str, list[tuple]]]:
    """(metrics, predictions with class *names*) of ``model`` on ``ds`` (no files written)."""
    from models.run.metrics import compute_map, tious_for

    preds = predict_dataset(model, ds, recipe, device, batch_size, amp, progress, full_length)
    named = {vid: [(s, e, ds.classes[c], sc) for s, e, c, sc in evs] for vid, evs in preds.items()}
    gt = {vid: ds.annotations[vid] for vid in ds.video_ids}
    missing = getattr(ds, "without_features", {})  # annotated, no features: missed, as in the reference evaluator
    gt.update(missing)
    metrics = compute_map(gt, named, tious=tious_for(recipe if recipe is not None else ds.recipe))
    metrics["n_videos"] = len(preds)
    metrics["n_videos_without_features"] = len(missing)
    # of those, the videos whose media/features job recorded a failure (workflow/scripts/feature_store.py)
    failed = getattr(getattr(ds, "store", None), "meta", {}).get("failed", {})
    metrics["videos_failed_extraction"] = {v: failed[v] for v in sorted(missing) if v in failed}
    metrics["n_videos_failed_extraction"] = len(metrics["videos_failed_extraction"])
    metrics["n_predictions"] = sum(len(v) for v in preds.values())
    metrics["full_length"] = bool(full_length)
    return metrics, named


def evaluate(model_name: str, checkpoint: str | os.PathLike[str], dataset: Any, recipe: Any | None,
             out_dir: str | os.PathLike[str], batch_size: int = 16, device: str | torch.device = "auto",
             amp: bool = True, progress: bool = False, full_length: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint written by :func:`models.run.train.train`; writes predictions/metrics JSON
    (with the checkpoint's ``selection``: which held-out videos chose it, and a weak model's ``decoder``:
    the one it decodes with and, when chosen on validation, its validation score;
    :mod:`models.run.decoder_selection`)."""
    from models.run.metrics import write_predictions_json

    out_dir = Path(out_dir)
    model = model_from_checkpoint(checkpoint, model_name, device=resolve_device(device))
    ck = load_checkpoint(checkpoint)
    ck_classes = ck.get("classes")
    if ck_classes is not None and list(ck_classes) != list(dataset.classes):
        raise ValueError(f"{checkpoint} was trained with a different class list than the dataset's")
    metrics, named = compute_dataset_metrics(model, dataset, recipe, device, batch_size, amp, progress,
                                             full_length)
    rec = recipe if recipe is not None else dataset.recipe
    info = {"model": model_name, "checkpoint": str(checkpoint), "recipe": getattr(rec, "name", str(rec)),
            "selection": ck.get("selection"), "ema_weights": bool(ck.get("ema", False)),
            "decoder": ck.get("decoder")}
    write_predictions_json(named, out_dir / "predictions.json", extra=info)
    metrics = {**info, **metrics}
    write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1, default=str))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from extractors.recipes import get_recipe
    from models.data.dataset import FeatureDataset
    from models.data.store import FeatureStore
    from models.data.unav import read_unav

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")  # progress
    ap = argparse.ArgumentParser(description="Evaluate a trained localizer checkpoint (dense mAP).")
    ap.add_argument("--model", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--annotations", required=True)
    ap.add_argument("--classes", default=None)
    ap.add_argument("--recipe", default="unav100")
    ap.add_argument("--subset", default="test")
    ap.add_argument("--t-max", type=int, default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--clip-to-t-max", action="store_true",
                    help="clip test videos at t_max instead of evaluating them whole")
    args = ap.parse_args(argv)
    recipe = get_recipe(args.recipe)
    ann = read_unav(args.annotations)
    ck_classes = load_checkpoint(args.checkpoint).get("classes")
    classes = read_classes(args.classes, ann) if (args.classes or ck_classes is None) else list(ck_classes)
    ds = FeatureDataset(FeatureStore(args.store), ann, classes, recipe, subset=args.subset or None,
                        t_max=args.t_max or recipe.t_max)
    m = evaluate(args.model, args.checkpoint, ds, recipe, args.out, args.batch_size, args.device,
                 not args.no_amp, progress=True, full_length=not args.clip_to_t_max)
    print(json.dumps({"avg": m["avg"], **m["reported"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
