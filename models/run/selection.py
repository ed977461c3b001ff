"""Which videos choose the checkpoint: a validation split, or a seeded held-out slice of the training videos;
never the test split, never the training loss."""

from __future__ import annotations

from typing import Any

import torch

from models.run.runtime import VideoSubset


def selection_split(train_ds: Any, val_ds: Any | None, holdout_frac: float,
                    seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """(training set, selection set, ``selection`` record) for checkpoint selection.

    Selection is always on held-out videos, never on the test split (refused) and never on the training
    loss. With a validation split (UnAV-100 has one) that split is used; without one (``val_ds=None`` or
    empty) :func:`holdout_split` holds ``holdout_frac`` of the training videos out of training. Which one
    was used is recorded as ``selection: {split: 'validation' | 'train-holdout', n: ..., video_ids: [...]}``
    in ``config.json``, ``best.pt``/``last.pt`` and (through the checkpoint) ``metrics.json``.
    """
    if val_ds is not None and len(val_ds):
        check_not_test(val_ds)
        return train_ds, val_ds, {"split": "validation", "n": len(val_ds)}
    fit, held = holdout_split(train_ds, holdout_frac, seed)
    return fit, held, {"split": "train-holdout", "n": len(held), "frac": float(holdout_frac),
                       "video_ids": list(held.video_ids)}


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


def check_not_test(ds: Any) -> None:
    """Refuse a selection set holding test videos (checkpoint and decoder selection,
    :mod:`models.run.decoder_selection`)."""
    anns = getattr(ds, "annotations", None)
    if not anns:
        return
    test = [v for v, a in anns.items() if getattr(a, "subset", None) == "test"]
    if test:
        raise ValueError(f"refusing to select checkpoints on the test split ({len(test)} test video(s) in the "
                         f"selection set, e.g. {test[:3]}); give a validation split or use holdout_frac")
