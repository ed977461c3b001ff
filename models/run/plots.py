"""Event timeline plots: where a person would rather look than read (ground truth vs. prediction)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from extractors.io import atomic_path  # noqa: E402

Event = tuple[float, float, str, float]  # start_s, end_s, label, score (score 1.0 for ground truth)


def text_colour(rgb: Sequence[float]) -> str:
    """"black" or "white", whichever reads on a bar of colour ``rgb`` (0..1 components, alpha ignored).

    Why: the score labels sit on bars coloured by score (viridis runs from dark violet to bright yellow);
    one fixed colour is unreadable at one end. WCAG relative luminance, threshold 0.179 (where black and
    white have equal contrast ratio)."""
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(float(c)) for c in rgb[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "white"


Distractor = tuple[float, float, str, str]  # start_s, end_s, label, kind ("audio_only" / "visual_only")
Panel = tuple[str, Sequence[Event], Sequence[str] | None]  # title, predictions, their tags (or None)

FP_COLOUR = "#d62728"  # the outline of a false positive and its tag


def plot_timeline(out_png: Path | str, duration: float, predicted: Sequence[Event],
                  ground_truth: Sequence[Event] | None = None, title: str = "",
                  banner: str | None = None, distractors: Sequence[Distractor] | None = None,
                  tags: Sequence[str] | None = None) -> None:
    """One video's predictions against its ground truth: :func:`plot_timeline_panels` with one panel."""
    plot_timeline_panels(out_png, duration, [("", predicted, tags)], ground_truth, title=title, banner=banner,
                         distractors=distractors)


def plot_timeline_panels(out_png: Path | str, duration: float, panels: Sequence[Panel],
                         ground_truth: Sequence[Event] | None = None, title: str = "",
                         banner: str | None = None, distractors: Sequence[Distractor] | None = None) -> None:
    """One panel per run (a model, its shuffled-label control ...) over the same rows, one row per class:
    ground truth (grey) and distractors (hatched, labelled audio/visual only) in the upper half, predictions
    in the lower half coloured by score (colour bar on the right), the score written on the bar in black
    or white by the bar's luminance, and, when a panel has ``tags``
    (:func:`models.run.metrics.explain_predictions`), each false positive outlined in red with what it is.
    The x axis runs 0..``duration``: pass the clip's real length (not a padded feature length)."""
    import matplotlib.patches as mpatches
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    gt, dis = list(ground_truth or []), list(distractors or [])
    labels = sorted({e[2] for _, pred, _ in panels for e in pred} | {e[2] for e in gt} | {d[2] for d in dis})
    rows = max(len(labels), 1)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 0.9 + len(panels) * (0.45 + 0.42 * rows)),
                             sharex=True, squeeze=False, layout="constrained")
    cmap, norm = plt.get_cmap("viridis"), Normalize(0.0, 1.0)
    any_fp = False
    for ax, (name, predicted, tags) in zip(axes[:, 0], panels, strict=True):
        for r, label in enumerate(labels):
            for s, e, lab, _ in gt:
                if lab == label:
                    ax.broken_barh([(s, e - s)], (r + 0.5, 0.35), facecolors="0.6")
            for s, e, lab, kind in dis:
                if lab == label:
                    ax.broken_barh([(s, e - s)], (r + 0.5, 0.35), facecolors="white", edgecolors="#ff7f0e",
                                   hatch="////", linewidth=1.0)
                    ax.text(s + 0.05, r + 0.68, kind.replace("_", " "), fontsize=7, va="center", color="#a04000")
            mine = [k for k, ev in enumerate(predicted) if ev[2] == label]
            tag_of = {k: (tags[k] if tags is not None and tags[k] != "TP" else "") for k in mine}
            # a false positive's tag goes right of its bar, or left of it where the clip ends; the bar and
            # its tag take one lane, so that no tag runs into the next bar or tag
            char_s = 5.5 * duration / 800  # seconds per character of the 7-pt tag on the ~800 px wide axis
            right = {k: predicted[k][1] + (len(tag_of[k]) + 1) * char_s < duration for k in mine}
            spans = [(predicted[k][0] - (0 if right[k] or not tag_of[k] else (len(tag_of[k]) + 1) * char_s),
                      predicted[k][1] + ((len(tag_of[k]) + 1) * char_s if right[k] and tag_of[k] else 0), "", 0.0)
                     for k in mine]
            lane, n_lanes = _lanes(spans)
            for k, ln in zip(mine, lane, strict=True):
                s, e, _, score = predicted[k]
                colour = cmap(norm(float(score)))
                fp = bool(tag_of[k])
                any_fp |= fp
                h = 0.35 / n_lanes
                y = r + 0.1 + (n_lanes - 1 - ln) * h
                ax.broken_barh([(s, e - s)], (y, h), facecolors=colour,
                               edgecolors=FP_COLOUR if fp else "none", linewidth=1.5 if fp else 0.0)
                ax.text(s + 0.03, y + h / 2, f"{score:.2f}", fontsize=7 if n_lanes == 1 else 6, va="center",
                        color=text_colour(colour))
                if fp:
                    ax.text(e + 0.05 if right[k] else s - 0.05, y + h / 2, tag_of[k], fontsize=7, va="center",
                            ha="left" if right[k] else "right", color=FP_COLOUR, fontweight="bold")
        ax.set_yticks([r + 0.5 for r in range(rows)], labels or ["(no events)"])
        ax.set_ylim(0, rows + 0.1)
        ax.set_xlim(0, max(duration, 1e-3))
        head = " — ".join(t for t in ((title if ax is axes[0, 0] else ""), name) if t)
        if head:
            ax.set_title(head, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes[:, 0].tolist(), fraction=0.025, pad=0.01,
                 label="prediction score")
    handles = [mpatches.Patch(facecolor="0.6", label="ground truth (upper half)")] if ground_truth is not None else []
    if dis:
        handles.append(mpatches.Patch(facecolor="white", edgecolor="#ff7f0e", hatch="////",
                                      label="distractor: one stream only, not an event"))
    handles.append(mpatches.Patch(facecolor=cmap(0.7), label="prediction (lower half, colour = score)"
                                  if ground_truth is not None else "prediction (colour = score)"))
    if any_fp:
        handles.append(mpatches.Patch(facecolor="white", edgecolor=FP_COLOUR, linewidth=2,
                                      label="false positive at tIoU 0.5, tagged with what it hit"))
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 4), fontsize=7, frameon=False)
    if banner:
        fig.supxlabel(banner, color="red", fontsize=8)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _lanes(events: Sequence[Event]) -> tuple[list[int], int]:
    """A lane per event so that overlapping events of one row are drawn one above the other (greedy
    interval partition by start time); (lane of each event, number of lanes)."""
    order = sorted(range(len(events)), key=lambda k: (events[k][0], events[k][1]))
    ends: list[float] = []
    lane = [0] * len(events)
    for k in order:
        free = next((i for i, end in enumerate(ends) if end <= events[k][0] + 1e-9), None)
        if free is None:
            ends.append(events[k][1])
            free = len(ends) - 1
        else:
            ends[free] = events[k][1]
        lane[k] = free
    return lane, max(len(ends), 1)


def plot_loss_curves(out_png: Path | str, curves: dict[str, Sequence[float]], title: str = "",
                     xlabel: str = "epoch", ylabel: str = "training loss",
                     panels: Sequence[Sequence[str]] | None = None, ylabels: Sequence[str] | None = None,
                     marks: dict[str, int] | None = None) -> None:
    """One line per named series, epochs numbered from 1 (as ``log.jsonl`` and the selected epoch are).

    ``panels`` groups series onto separate axes side by side (e.g. EAR's stage-1 generator loss and the
    stage-3 losses: different objectives on different scales, which one shared axis flattens); by
    default all series share one axis. A series named in no panel is left out. ``ylabels``: one per
    panel (default ``ylabel`` for all); ``marks``: series -> epoch drawn as a star (the selected epoch)."""
    groups = [list(p) for p in panels] if panels else [list(curves)]
    groups = [[k for k in g if k in curves] for g in groups]
    groups = [g for g in groups if g] or [[]]
    fig, axes = plt.subplots(1, len(groups), figsize=(6 if len(groups) == 1 else 5 * len(groups), 3.5),
                             squeeze=False)
    labels_y = list(ylabels) if ylabels else [ylabel] * len(groups)
    for ax, group, yl in zip(axes[0], groups, labels_y + [ylabel] * (len(groups) - len(labels_y)), strict=False):
        for label in group:
            ys = list(curves[label])
            line, = ax.plot(range(1, len(ys) + 1), ys, marker="o", markersize=3, label=label)
            ep = (marks or {}).get(label)
            if ep is not None and 1 <= ep <= len(ys):
                ax.plot([ep], [ys[ep - 1]], marker="*", markersize=13, color=line.get_color(),
                        markeredgecolor="black", linestyle="none")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(yl)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(group) > 1 or len(groups) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
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
