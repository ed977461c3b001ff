"""UnAV-100's annotation JSON (``{"database": {vid: {"subset", "duration", "annotations": [...]}}}``), read
and written; ActivityNet's file shares the layout (:mod:`models.data.activitynet`)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extractors.io import write_text
from models.data.annotations import Segment, VideoAnnotation, label_ids


def _read_database(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``database`` of an annotation JSON, plain or gzipped (``.gz``)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    if "database" not in data:
        raise ValueError(f"{path}: not an ActivityNet/UnAV-style annotation file (no 'database' key)")
    return data["database"]


# ActivityNet 1.3 names its subsets ``training`` / ``validation`` / ``testing``; everything downstream (the
# splits of ``models.run.pipeline.load_splits``, the workflow) uses UnAV-100's ``train`` / ``validation`` / ``test``.
SUBSET_ALIASES = {"training": "train", "testing": "test", "val": "validation"}


def _subset(name: Any) -> str:
    s = str(name or "").lower()
    return SUBSET_ALIASES.get(s, s)


def read_unav(path: str | os.PathLike[str]) -> dict[str, VideoAnnotation]:
    """Read the UnAV-100 annotation JSON (``{"database": {vid: {"subset", "duration",
    "annotations": [{"segment": [s, e], "label", "label_id"}]}}}``).

    ``label_id`` is kept on each :class:`Segment`: it decides the class order (:func:`label_ids`,
    :func:`class_list`) and the ids written for the reference evaluator (``models.run.interchange``).
    A file whose ``label_id`` disagrees with its labels (one name with two ids, one id for two names)
    is rejected here, naming the pair, rather than training on a silently merged class. Subset names
    are mapped to ``train`` / ``validation`` / ``test`` (:data:`SUBSET_ALIASES`).
    """
    out: dict[str, VideoAnnotation] = {}
    for vid, v in _read_database(path).items():
        segs = [Segment(float(a["segment"][0]), float(a["segment"][1]), str(a["label"]),
                        int(a["label_id"]) if a.get("label_id") is not None else None)
                for a in v.get("annotations", [])]
        out[vid] = VideoAnnotation(str(vid), _subset(v.get("subset")), float(v.get("duration", 0.0)), segs)
    try:
        label_ids(out)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return out


def write_unav(annotations: dict[str, VideoAnnotation], path: str | os.PathLike[str],
               classes: Sequence[str] | None = None) -> None:
    """Write annotations as UnAV-100 JSON. ``label_id``: the index in ``classes`` when given, else the
    ids of :func:`label_ids` (the file's own ids survive a read/write round trip)."""
    cidx = {c: i for i, c in enumerate(classes)} if classes is not None else label_ids(annotations)
    db = {}
    for vid, a in annotations.items():
        db[vid] = {
            "subset": a.subset, "duration": float(a.duration),
            "annotations": [{"segment": [float(s.start), float(s.end)], "label": s.label,
                             "label_id": cidx[s.label]} for s in a.segments],
        }
    write_text(path, json.dumps({"database": db}, indent=1))


def read_distractors(annotations: str | os.PathLike[str]) -> dict[str, list[tuple[float, float, str, str]]]:
    """``{video: [(start_s, end_s, label, kind)]}`` from the ``distractors.json`` the demo generator writes
    beside its annotation file (``extractors.synthetic_videos``: a class pattern without its sound,
    ``visual_only``, or the reverse, ``audio_only``; not events). ``{}`` for data without one. Why: the
    timelines draw them, so that a prediction on one reads as what it is rather than as noise."""
    path = Path(annotations).parent / "distractors.json"
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {str(vid): [(float(d["segment"][0]), float(d["segment"][1]), str(d["label"]), str(d.get("kind", "")))
                       for d in events] for vid, events in doc.items()}
