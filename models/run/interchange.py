"""Our predictions in the reference evaluator's input format, with the annotation file's class ids.

``predictions.json`` (:func:`models.run.metrics.write_predictions_json`) is ActivityNet's results format:
events in seconds with class *names*. The UnAV-100 evaluator (ttgeng233/UnAV ``libs/utils/metrics.py``,
``ANETdetection``, ActionFormer's, as in the same authors' ttgeng233/UniAV ``libs/utils/metrics.py``)
speaks integer ``label_id``s instead. Its ``evaluate(preds)`` takes either

- a JSON file read by ``load_pred_seg_from_json``: ``{"database": {vid: [{"segment": [s, e],
  "label_id": int, "scores": float}, ...]}}`` (note ``scores``, plural), or
- the dict its ``eval.py --saveonly`` pickles (``eval_results.pkl``): ``{"video-id": [...],
  "t-start": array, "t-end": array, "label": int array, "score": array}``.

:func:`convert` writes either (by the output's suffix). Ids come from the annotation file
(:func:`models.data.annotations.label_ids`), never from our class index, so they are right even for a model
trained on a slice whose compact class indices differ from the file's ids, and for checkpoints trained
with the old sorted-name order. A predicted label the file does not know is an error.

Ground truth is not converted: the evaluator reads it from the annotation file itself, every video of
the split whether or not it has predictions, so a video without features is scored as missed there as
it is in :mod:`models.run.evaluate`.

CLI::

    python -m models.run.interchange --predictions results/unav100/models/clasp/predictions.json \\
        --annotations data/unav100/unav100_annotations.json --out clasp_unav.json [--class-map classes.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from extractors.io import atomic_path, write_text
from models.data.annotations import label_ids
from models.data.unav import read_unav
from models.run.metrics import load_predictions_json

Predictions = Mapping[str, Sequence[tuple[float, float, Any, float]]]


def to_label_ids(predictions: Predictions, ids: Mapping[str, int]) -> dict[str, list[tuple[float, float, int, float]]]:
    """Replace class names by the annotation file's ids; unknown names raise (listing a few)."""
    unknown = sorted({str(lab) for evs in predictions.values() for _, _, lab, _ in evs if lab not in ids})
    if unknown:
        raise ValueError(f"{len(unknown)} predicted label(s) are not in the annotation file: {unknown[:5]}")
    return {vid: [(float(s), float(e), int(ids[lab]), float(sc)) for s, e, lab, sc in evs]
            for vid, evs in predictions.items()}


def unav_json(predictions: Predictions, ids: Mapping[str, int]) -> dict[str, Any]:
    """The document ``load_pred_seg_from_json`` reads (``label`` kept alongside for people; it ignores it)."""
    names = {i: n for n, i in ids.items()}
    return {"database": {vid: [{"segment": [s, e], "label_id": c, "label": names[c], "scores": sc}
                               for s, e, c, sc in evs]
                         for vid, evs in to_label_ids(predictions, ids).items()}}


def unav_arrays(predictions: Predictions, ids: Mapping[str, int]) -> dict[str, Any]:
    """The column dict ``valid_one_epoch`` pickles and ``ANETdetection.evaluate`` accepts."""
    rows = [(vid, s, e, c, sc) for vid, evs in to_label_ids(predictions, ids).items() for s, e, c, sc in evs]
    return {"video-id": [r[0] for r in rows],
            "t-start": np.asarray([r[1] for r in rows], dtype=np.float32),
            "t-end": np.asarray([r[2] for r in rows], dtype=np.float32),
            "label": np.asarray([r[3] for r in rows], dtype=np.int64),
            "score": np.asarray([r[4] for r in rows], dtype=np.float32)}


def convert(predictions_json: str | os.PathLike[str], annotations: str | os.PathLike[str],
            out: str | os.PathLike[str]) -> Path:
    """``predictions.json`` -> the evaluator's ``.json`` (or ``.pkl``) at ``out``, ids from ``annotations``."""
    out = Path(out)
    ids = label_ids(read_unav(annotations))
    preds = load_predictions_json(predictions_json)
    if out.suffix == ".pkl":
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            pickle.dump(unav_arrays(preds, ids), fh)
    elif out.suffix == ".json":
        write_text(out, json.dumps(unav_json(preds, ids)))
    else:
        raise ValueError(f"{out}: the output must end in .json (load_pred_seg_from_json) or .pkl (eval_results.pkl)")
    return out


def write_class_map(annotations: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, int]:
    """``{label: label_id}`` of the annotation file, as JSON (ids as the file gives them, sorted by id)."""
    ids = label_ids(read_unav(annotations))
    ordered = dict(sorted(ids.items(), key=lambda kv: kv[1]))
    write_text(out, json.dumps(ordered, indent=1))
    return ordered


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Convert avloc predictions.json to the UnAV evaluator's input.")
    ap.add_argument("--predictions", type=Path, help="predictions.json of models.run.evaluate")
    ap.add_argument("--annotations", type=Path, required=True, help="the annotation file (its label_id are used)")
    ap.add_argument("--out", type=Path, help=".json (load_pred_seg_from_json) or .pkl (eval.py --saveonly)")
    ap.add_argument("--class-map", type=Path, help="also write {label: label_id} of the annotation file")
    args = ap.parse_args(argv)
    if (args.predictions is None) != (args.out is None):
        ap.error("--predictions and --out go together")
    if args.predictions is None and args.class_map is None:
        ap.error("nothing to do: give --predictions/--out and/or --class-map")
    if args.predictions is not None:
        print(convert(args.predictions, args.annotations, args.out))
    if args.class_map is not None:
        write_class_map(args.annotations, args.class_map)
        print(args.class_map)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
