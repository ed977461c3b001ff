"""Event timeline plots: where a person would rather look than read (ground truth vs. prediction)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from extractors.io import atomic_path  # noqa: E402

Event = tuple[float, float, str, float]  # start_s, end_s, label, score (score 1.0 for ground truth)


def plot_timeline(out_png: Path | str, duration: float, predicted: Sequence[Event],
                  ground_truth: Sequence[Event] | None = None, title: str = "",
                  banner: str | None = None) -> None:
    """One row per class: ground-truth bars (grey, above) and predicted bars (coloured by score)."""
    labels = sorted({e[2] for e in predicted} | {e[2] for e in (ground_truth or [])})
    rows = max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.45 * rows))
    cmap = plt.get_cmap("viridis")
    for r, label in enumerate(labels):
        for s, e, lab, _ in ground_truth or []:
            if lab == label:
                ax.broken_barh([(s, e - s)], (r + 0.5, 0.35), facecolors="0.6")
        for s, e, lab, score in predicted:
            if lab == label:
                ax.broken_barh([(s, e - s)], (r + 0.1, 0.35), facecolors=cmap(float(score)))
                ax.text(s, r + 0.28, f"{score:.2f}", fontsize=7, va="center", color="white")
    ax.set_yticks([r + 0.5 for r in range(rows)], labels or ["(no events)"])
    ax.set_ylim(0, rows + 0.1)
    ax.set_xlim(0, max(duration, 1e-3))
    ax.set_xlabel("time (s)")
    note = "grey: ground truth (upper), colour: prediction (lower, by score)" if ground_truth is not None \
        else "prediction, coloured by score"
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=9)
    if banner:
        fig.text(0.5, 0.01, banner, ha="center", color="red", fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_loss_curves(out_png: Path | str, curves: dict[str, Sequence[float]], title: str = "",
                     xlabel: str = "epoch", ylabel: str = "training loss") -> None:
    """One line per named series (e.g. EAR's stage 1 and stage 3 losses per epoch)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, ys in curves.items():
        ax.plot(range(len(ys)), list(ys), marker="o", markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def plot_training_curve(out_png: Path | str, history: Sequence[dict], title: str = "") -> None:
    """A localizer's run (``log.jsonl`` records): training loss and validation Avg mAP per epoch, side by side."""
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
    try:
        with atomic_path(out_png) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
    finally:
        plt.close(fig)
