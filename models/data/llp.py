"""LLP (AVVP) annotation CSVs: read (:func:`read_llp`), as HAN's per-second matrices
(:func:`llp_segment_matrix`), and written from UnAV-format annotations (:func:`unav_to_llp_csvs`)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from extractors.io import write_text
from models.data.annotations import Segment, VideoAnnotation


def read_llp(
    weak_csv: str | os.PathLike[str],
    audio_eval_csv: str | os.PathLike[str] | None = None,
    visual_eval_csv: str | os.PathLike[str] | None = None,
    subset: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Read the LLP (AVVP) CSVs of YapengTian/AVVP-ECCV20 ``data/``.

    Formats (verified on the public files): ``AVVP_train.csv`` / ``AVVP_val_pd.csv`` /
    ``AVVP_test_pd.csv`` are tab-separated with header ``filename\\tevent_labels`` and
    comma-separated labels; ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv`` are tab-separated
    with header ``filename\\tonset\\toffset\\tevent_labels``, one row per event, integer seconds,
    the event covering 1-s segments ``onset .. offset-1`` (HAN fills ``GT[c, onset:offset] = 1``;
    rows with ``onset >= offset`` therefore mark nothing -- the real eval CSVs have six such audio rows,
    one of them ``9 -> 0`` -- and duplicate rows are harmless). The rows are kept as read (no
    reordering of onset/offset) so that :func:`llp_segment_matrix` reproduces HAN's matrix exactly.

    Returns ``{vid: {"labels": [str], "subset": str, "audio": [Segment], "visual": [Segment]}}``
    for the videos of ``weak_csv``; eval rows of other videos (the real CSVs hold rows of eight files
    that are in no split) are ignored.
    """
    out: dict[str, dict[str, Any]] = {}
    sub = subset if subset is not None else Path(weak_csv).stem
    for row in _read_tsv(weak_csv):
        labels = [x.strip() for x in row["event_labels"].split(",") if x.strip()]
        out[row["filename"]] = {"labels": labels, "subset": sub, "audio": [], "visual": []}
    for key, p in (("audio", audio_eval_csv), ("visual", visual_eval_csv)):
        if p is None:
            continue
        for row in _read_tsv(p):
            vid = row["filename"]
            if vid in out:
                out[vid][key].append(Segment(float(row["onset"]), float(row["offset"]),
                                             row["event_labels"].strip()))
    return out


def unav_to_llp_csvs(annotations: dict[str, VideoAnnotation], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """An LLP view of UnAV-format (dense AV) annotations, as LLP's five CSVs (the formats of
    :func:`read_llp`): ``test`` videos -> ``AVVP_test_pd.csv``, ``validation`` videos ->
    ``AVVP_val_pd.csv`` (both with eval rows, as LLP's validation and test splits have), the others ->
    ``AVVP_train.csv``. UnAV events are audio-visual, so each gives the same audio and visual eval row,
    ``onset = floor(start)``, ``offset = ceil(end)`` (HAN's segments ``onset .. offset-1``). Unlike LLP's
    own CSVs, the eval rows also cover the training videos (their events are known), so stage 2's
    pseudo-labels can be scored on the training split too (the summary's train row)."""
    out = Path(out_dir)
    bad = sorted({sg.label for a in annotations.values() for sg in a.segments if {",", "\t", "\n"} & set(sg.label)})
    if bad:  # LLP's CSVs separate labels with commas and columns with tabs
        raise ValueError(f"labels {bad} contain a comma, tab or newline and cannot be written as LLP CSVs")
    split = {"train": [v for v, a in annotations.items() if a.subset not in ("test", "validation")],
             "val": [v for v, a in annotations.items() if a.subset == "validation"],
             "test": [v for v, a in annotations.items() if a.subset == "test"]}

    def weak(vids: list[str]) -> str:
        return "filename\tevent_labels\n" + "".join(
            f"{v}\t{','.join(sorted({sg.label for sg in annotations[v].segments}))}\n" for v in vids)

    rows = "".join(f"{v}\t{math.floor(sg.start)}\t{math.ceil(sg.end)}\t{sg.label}\n"
                   for v in split["train"] + split["val"] + split["test"] for sg in annotations[v].segments)
    texts = {"AVVP_train.csv": weak(split["train"]), "AVVP_val_pd.csv": weak(split["val"]),
             "AVVP_test_pd.csv": weak(split["test"])}
    for mod in ("audio", "visual"):
        texts[f"AVVP_eval_{mod}.csv"] = "filename\tonset\toffset\tevent_labels\n" + rows
    paths = {}
    for name, text in texts.items():
        write_text(out / name, text)
        paths[name] = out / name
    return paths


def _read_tsv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return rows


def llp_segment_matrix(segments: Sequence[Segment], classes: Sequence[str], t_len: int = 10) -> np.ndarray:
    """(C, t_len) binary matrix of 1-s segments, HAN's ``GT[c, onset:offset] = 1``."""
    idx = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), t_len), dtype=np.float32)
    for s in segments:
        m[idx[s.label], int(s.start):int(s.end)] = 1.0
    return m
