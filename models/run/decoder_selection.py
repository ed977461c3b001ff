"""Choosing a weak model's decoder on the selection split, the named step after training's epochs.

A weak localizer's Avg mAP depends on how its step scores become segments as much as on the scores
(issue 31: the same CLASP scores gave 1.8 with the paper's 0.5 runs and 11.8 with the standard
weak-localization decoder). Every decoder parameter is therefore chosen like the checkpoint: on the
validation split, or on the seeded holdout of the training videos when there is none
(:func:`models.run.selection.selection_split`), never on test (a test video in the set is refused).

How (:func:`select_decoder`): the selected checkpoint's step scores, video scores and paper gates are
computed once (:func:`collect_scores`); each candidate decoder then only re-decodes those arrays
(:func:`models.localizers.decoding.decode_weak_video`) and scores them with the evaluation's mAP. The
search is coordinate-wise over :data:`GRID`, one sweep per parameter in its order, each sweep keeping the
best value found so far (a full product of the grid would cost 120 decodings instead of ~16); one
progress line per sweep. The paper's rule (``mode: paper``) is a candidate too: it is kept when it
scores higher. Ties keep the earlier candidate (the defaults first), so the choice is deterministic.

Where it lands (:func:`select_and_store`, called by :func:`models.run.train.train`): ``best.pt``'s
``config.decoder`` becomes the chosen :class:`~models.localizers.decoding.WeakDecodeConfig` (so evaluation
and prediction, which rebuild the model from that config, decode with it) and ``best.pt["decoder"]``
records it with its validation Avg mAP, the paper rule's and the number of candidates; evaluation copies
the record into ``metrics.json``. A config that pins ``decoder`` (``paper``, ``standard`` or a dict) is
recorded as pinned and not searched. Fully supervised models keep their regression decoder (no record).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.localizers.decoding import THRESHOLDS, WeakDecodeConfig, decode_weak_video, weak_decode_config
from models.localizers.postprocess import step_events_to_seconds
from models.run.evaluate import iter_outputs, valid_and_clipped
from models.run.progress import PROGRESS_LOGGER
from models.run.runtime import atomic_torch_save, load_checkpoint, model_from_checkpoint
from models.run.selection import check_not_test

#: the coordinate-wise search, one sweep per entry in this order: smoothing first (it decides whether a
#: top-k MIL pool's peaks join into whole events), then how many classes, which threshold set
#: (:data:`models.localizers.decoding.THRESHOLDS`) and which NMS (BaS-Net's 0.7, this project's review's 0.5,
#: UnAV's Gaussian Soft-NMS)
GRID: dict[str, tuple[dict[str, Any], ...]] = {
    "smooth": tuple({"smooth": w} for w in (1, 5, 9, 15, 25, 41)),
    "top_classes": tuple({"top_classes": k} for k in (1, 2, 3, 5)),
    "thresholds": tuple({"thresholds": THRESHOLDS[k]} for k in ("0.1:0.9", "basnet", "cola")),
    "nms": ({"nms": "hard", "nms_iou": 0.5}, {"nms": "hard", "nms_iou": 0.7}, {"nms": "gaussian"}),
}


@dataclass
class ScoreCache:
    """One model's decoder inputs on one dataset, per video: ``(video id, step probabilities (n, C),
    video scores (C,), paper gate (C,) or None, valid steps n, clipped, duration)``, plus the paper rule's
    threshold/order and what mAP needs (classes, ground truth, tIoUs, recipe)."""

    videos: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, int, bool, float]]
    threshold: float
    by_score: bool
    classes: list[str]
    gt: dict[str, Any]
    tious: np.ndarray
    recipe: Any


def supports_selection(model: torch.nn.Module) -> bool:
    """Whether ``model`` decodes through the weak decoder (it has ``weak_outputs`` and is weakly supervised)."""
    return hasattr(model, "weak_outputs") and getattr(model, "supervision", "weak") == "weak"


@torch.no_grad()
def collect_scores(model: torch.nn.Module, ds: Any, device: str | torch.device = "cpu", batch_size: int = 16,
                   amp: bool = True) -> ScoreCache:
    """The decoder inputs of every video of ``ds``, computed once (what prediction would decode)."""
    from models.run.metrics import tious_for

    videos = []
    threshold, by_score = 0.5, False
    for batch, out in iter_outputs(model, ds, device, batch_size, amp):
        w = model.weak_outputs(out, batch)
        threshold, by_score = float(w.threshold), bool(w.by_score)
        p = w.step_probs.detach().float().cpu().numpy()
        v = w.video.detach().float().cpu().numpy()
        g = None if w.gate is None else w.gate.detach().float().cpu().numpy()
        for b, (vid, (n, clipped)) in enumerate(zip(batch["video_ids"], valid_and_clipped(batch), strict=True)):
            videos.append((vid, p[b, :n].copy(), v[b].copy(), None if g is None else g[b].copy(), n, clipped,
                           float(batch["durations"][b])))
    gt = {vid: ds.annotations[vid] for vid in ds.video_ids}
    gt.update(getattr(ds, "without_features", {}))  # annotated without features: missed, as evaluation counts them
    return ScoreCache(videos, threshold, by_score, list(ds.classes), gt, tious_for(ds.recipe), ds.recipe)


def decode_cache(cache: ScoreCache, cfg: WeakDecodeConfig) -> dict[str, list[tuple[float, float, str, float]]]:
    """``{video: [(start_s, end_s, class name, score)]}``: the cached scores decoded with ``cfg``, in seconds
    as :func:`models.run.evaluate.predict_dataset` converts them."""
    out = {}
    for vid, p, v, g, n, clipped, dur in cache.videos:
        dets = decode_weak_video(p, v, g, cfg, cache.threshold, cache.by_score)
        out[vid] = [(s, e, cache.classes[c], sc)
                    for s, e, c, sc in step_events_to_seconds(dets, cache.recipe, None if clipped else n, dur)]
    return out


def cache_map(cache: ScoreCache, cfg: WeakDecodeConfig) -> float:
    """Avg mAP (in [0, 1]) of the cached scores decoded with ``cfg``."""
    from models.run.metrics import compute_map

    return float(compute_map(cache.gt, decode_cache(cache, cfg), tious=cache.tious)["avg"])


def select_decoder(model: torch.nn.Module, ds: Any, device: str | torch.device = "cpu", batch_size: int = 16,
                   amp: bool = True, grid: dict[str, Sequence[dict[str, Any]]] | None = None,
                   say: Callable[[str], None] | None = None) -> tuple[WeakDecodeConfig, dict[str, Any]]:
    """(the decoder of best Avg mAP on ``ds``, its record) -- see the module docstring. ``ds`` is the
    selection set only: nothing else reaches the search, and a set holding test videos is refused."""
    check_not_test(ds)
    say = say or logging.getLogger(PROGRESS_LOGGER).info
    t0 = time.perf_counter()
    cache = collect_scores(model, ds, device, batch_size, amp)
    say(f"decoder selection: step scores of {len(cache.videos)} videos in {time.perf_counter() - t0:.1f} s")
    scores: dict[str, float] = {}

    def score(cfg: WeakDecodeConfig) -> float:
        key = repr(cfg)
        if key not in scores:
            scores[key] = cache_map(cache, cfg)
        return scores[key]

    best = WeakDecodeConfig()
    best_score = score(best)
    for name, values in (grid if grid is not None else GRID).items():
        t1 = time.perf_counter()
        for over in values:
            cand = dataclasses.replace(best, **over)
            if score(cand) > best_score:
                best, best_score = cand, score(cand)
        say(f"decoder selection: sweep {name} ({len(values)} settings) in {time.perf_counter() - t1:.1f} s, "
            f"best so far {100 * best_score:.2f} Avg mAP ({describe(best)}), {len(scores)} decoded")
    paper = WeakDecodeConfig(mode="paper")
    paper_score = score(paper)
    if paper_score > best_score:
        best, best_score = paper, paper_score
    record = {"mode": "selected", "chosen": best.to_dict(), "split_avg": best_score, "paper_split_avg": paper_score,
              "n_candidates": len(scores), "n_videos": len(cache.videos), "seconds": time.perf_counter() - t0}
    say(f"decoder selection: chose {describe(best)}: {100 * best_score:.2f} Avg mAP (paper rule "
        f"{100 * paper_score:.2f}), {len(scores)} decoders in {time.perf_counter() - t0:.1f} s")
    return best, record


def describe(cfg: WeakDecodeConfig) -> str:
    """A decoder in a few words (progress lines, the bench table)."""
    if cfg.mode == "paper":
        return "paper rule"
    thr = next((k for k, v in THRESHOLDS.items() if v == cfg.thresholds), str(cfg.thresholds))
    nms = f"{cfg.nms} {cfg.nms_iou:g}" if cfg.nms == "hard" else cfg.nms
    return f"smooth {cfg.smooth}, top {cfg.top_classes}, thresholds {thr}, NMS {nms}"


def select_and_store(best_path: str | Path, requested: Any, sel_ds: Any, split: str, device: str | torch.device,
                     batch_size: int, amp: bool, say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """Training's decoder step: choose the decoder of the model in ``best_path`` on ``sel_ds`` when the run's
    config asks ``decoder: auto`` (``requested``), and write it and its record into ``best_path``. Returns the
    record (``None`` for a model without a weak decoder)."""
    if requested is None:  # a model config without a weak decoder (EAR)
        return None
    model = model_from_checkpoint(best_path, device=device)
    if not supports_selection(model):
        return None
    ck = load_checkpoint(best_path)
    if requested == "auto":
        chosen, record = select_decoder(model, sel_ds, device, batch_size, amp, say=say)
        ck["config"] = {**ck["config"], "decoder": chosen.to_dict()}
    else:
        record = {"mode": "pinned", "chosen": weak_decode_config(requested).to_dict()}
    ck["decoder"] = {**record, "split": split}
    atomic_torch_save(ck, Path(best_path))
    return ck["decoder"]


def decoder_maps(model: torch.nn.Module, ds: Any, decoders: dict[str, WeakDecodeConfig],
                 device: str | torch.device = "cpu", batch_size: int = 16, amp: bool = True) -> dict[str, float]:
    """Avg mAP (in [0, 1]) of each named decoder on the same step scores of ``ds`` (the bench's columns)."""
    cache = collect_scores(model, ds, device, batch_size, amp)
    return {name: cache_map(cache, cfg) for name, cfg in decoders.items()}
