"""EAR's inputs from per-second LLP features: the ``.npz`` files the stages of :mod:`models.avvp.train` read.

``python -m models.avvp.inputs <command>``, one Snakemake job each (workflow/rules/llp.smk):

- ``text``: the class prompts' text embeddings, CLIP ``"A photo of <event>"`` (``text_v``) and CLAP
  ``"This is the sound of <event>"`` (``text_a``), for the classes of the LLP CSVs (sorted names) or of
  UnAV-format annotations (encoders: :func:`extractors.llp.extract.text_embeddings`).
- ``dense``: stage-1 data from a UnAV-format dataset: whole-video per-second CLAP/CLIP features
  (``extractors.llp.extract clip --max-seconds <dense_t_max>``, one file per video) and AV labels on 1 s steps, with the
  text embeddings of its classes.
- ``split``: the per-clip feature files of one split (:mod:`extractors.llp.extract`) + the CSVs -> ``train.npz`` /
  ``test.npz`` in the layout of :mod:`models.avvp.train` (``audio``, ``visual``, ``gen_audio``,
  ``gen_visual``, ``labels``, ``text_*``, ``class_names``, ``video_ids``, and ``gt_a``/``gt_v`` where the
  eval CSVs cover the video). Clips shorter than 10 s are zero-padded to 10 segments (HAN's loader
  assumes exactly 10). CSV videos without features (no clip, or extraction failed) are left out, never
  silently: their ids go into ``missing_ids``, their count into the log, stage 3's ``metrics.json``
  and the summary page (:func:`present_videos`).
- ``csvs``: LLP's CSVs from UnAV-format annotations (:func:`models.data.llp.unav_to_llp_csvs`).

Every output is written to a temporary file and renamed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from extractors.io import load_npz, save_npz
from extractors.llp.extract import add_weights_args, base_kinds, read_clips, text_embeddings
from extractors.llp.features import N_SEGMENTS


def valid_lengths(per_video: list[dict[str, np.ndarray]], names: Sequence[str], t: int) -> np.ndarray:
    """Segments of each clip that every feature in ``names`` covers (at most ``t``)."""
    return np.array([min(t, *(len(f[k]) for n in names for k in base_kinds(n))) for f in per_video])


def _stack(per_video: list[dict[str, np.ndarray]], name: str, t: int) -> np.ndarray:
    """``(N, t, D)`` of feature ``name`` (a base kind or a combination), zero-padded to ``t`` segments."""
    parts = base_kinds(name)
    rows = []
    for f in per_video:
        x = np.concatenate([f[k] for k in parts], axis=1)[:t]
        rows.append(np.pad(x, ((0, t - len(x)), (0, 0))))
    return np.stack(rows).astype(np.float32)


def present_videos(annotations: dict[str, Any], available: Any) -> tuple[list[str], list[str]]:
    """The split's CSV videos (CSV order) that have features, and those that do not."""
    present = [v for v in annotations if v in available]
    return present, [v for v in annotations if v not in available]


def assemble_split(annotations: dict[str, dict[str, Any]], features: dict[str, dict[str, np.ndarray]],
                   text: dict[str, np.ndarray], visual: str, audio: str, generator: bool = True,
                   with_gt: bool = False, t: int = N_SEGMENTS) -> dict[str, np.ndarray]:
    """One split in :mod:`models.avvp.train`'s layout. ``annotations``: :func:`models.data.llp.read_llp`
    output; ``features``: ``{vid: {kind: (S, D)}}`` for the videos to include (order kept);
    ``with_gt``: segment ground truth from the eval CSVs (the test split)."""
    from models.data.llp import llp_segment_matrix

    classes = [str(c) for c in text["class_names"]]
    cidx = {c: i for i, c in enumerate(classes)}
    vids = list(features)
    per = [features[v] for v in vids]
    labels = np.zeros((len(vids), len(classes)), np.float32)
    for i, v in enumerate(vids):
        for lab in annotations[v]["labels"]:
            labels[i, cidx[lab]] = 1.0
    used = [audio, visual] + (["clip", "clap"] if generator else [])
    out = {"audio": _stack(per, audio, t), "visual": _stack(per, visual, t), "labels": labels,
           "class_names": np.array(classes), "video_ids": np.array(vids),
           "mask": np.arange(t)[None, :] < valid_lengths(per, used, t)[:, None]}
    if generator:
        out["gen_visual"], out["gen_audio"] = _stack(per, "clip", t), _stack(per, "clap", t)
        out["text_a"], out["text_v"] = text["text_a"], text["text_v"]
    if with_gt:
        out["gt_a"] = np.stack([llp_segment_matrix(annotations[v]["audio"], classes, t) for v in vids]).astype(np.uint8)
        out["gt_v"] = np.stack([llp_segment_matrix(annotations[v]["visual"], classes, t) for v in vids]).astype(np.uint8)
    return out


def assemble_dense(unav_json: Path | str, features: dict[str, dict[str, np.ndarray]], text: dict[str, np.ndarray],
                   t_max: int) -> dict[str, np.ndarray]:
    """Stage-1 data (``models.avvp.train`` dense layout) from UnAV-format annotations and per-second CLAP
    (audio) / CLIP (visual) features of the annotated videos that have a feature file; AV labels on 1 s
    steps (:func:`models.avvp.train.dense_arrays`, step ``t`` centred at ``t + 0.5`` s)."""
    from extractors.recipes import get_recipe
    from models.avvp.train import dense_arrays
    from models.data.unav import read_unav

    anns = read_unav(unav_json)
    classes = [str(c) for c in text["class_names"]]
    videos = []
    for vid, ann in anns.items():
        if vid in features:
            videos.append((ann, features[vid]["clap"], features[vid]["clip"]))
    if not videos:
        raise SystemExit(f"no CLAP/CLIP features for any video of {unav_json}")
    out = dense_arrays(videos, classes, get_recipe("llp"), t_max)
    return {**out, "text_a": text["text_a"], "text_v": text["text_v"], "class_names": np.array(classes)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pt = sub.add_parser("text", help="CLIP/CLAP text embeddings of the class prompts")
    classes = pt.add_mutually_exclusive_group(required=True)
    classes.add_argument("--csv", type=Path, nargs="+", help="LLP CSVs whose labels define the classes")
    classes.add_argument("--unav-json", type=Path, help="UnAV-format annotations whose labels define the classes")
    pt.add_argument("--out", type=Path, required=True)
    pt.add_argument("--no-encoders", action="store_true", help="class list only (no generator, no text encoders)")
    ps = sub.add_parser("split", help="assemble one split .npz from per-video features")
    ps.add_argument("--weak-csv", type=Path, required=True)
    ps.add_argument("--eval-audio-csv", type=Path)
    ps.add_argument("--eval-visual-csv", type=Path)
    ps.add_argument("--features-dir", type=Path, required=True,
                    help="folder of per-clip <id>.npz/.json; the split's videos without features are skipped")
    ps.add_argument("--text", type=Path, required=True)
    ps.add_argument("--visual", default="resnet152_r21d")
    ps.add_argument("--audio", default="vggish")
    ps.add_argument("--no-generator", action="store_true", help="no CLIP/CLAP generator features")
    ps.add_argument("--out", type=Path, required=True)
    pc = sub.add_parser("csvs", help="LLP's CSVs from UnAV-format annotations (models.data.llp.unav_to_llp_csvs)")
    pc.add_argument("--unav-json", type=Path, required=True)
    pc.add_argument("--out-dir", type=Path, required=True)
    pd = sub.add_parser("dense", help="stage-1 dense AV data from UnAV-format annotations + per-second CLAP/CLIP")
    pd.add_argument("--unav-json", type=Path, required=True)
    pd.add_argument("--features-dir", type=Path, required=True,
                    help="folder of per-video <id>.npz/.json with clip and clap")
    pd.add_argument("--text", type=Path, required=True, help="text embeddings of the annotation classes")
    pd.add_argument("--t-max", type=int, default=60, help="steps (seconds) per video; longer ones are cut")
    pd.add_argument("--out", type=Path, required=True)
    add_weights_args(pt)
    a = p.parse_args(argv)
    if a.cmd == "text":
        from models.data.llp import read_llp

        if a.unav_json is not None:
            from models.data.annotations import class_list
            from models.data.unav import read_unav

            classes = class_list(read_unav(a.unav_json))
        else:
            classes = sorted({lab for csv in a.csv for row in read_llp(csv).values() for lab in row["labels"]})
        save_npz(a.out, **text_embeddings(classes, a.weights, a.weights_root, a.seed, a.clip_model,
                                         encoders=not a.no_encoders))
    elif a.cmd == "csvs":
        from models.data.llp import unav_to_llp_csvs
        from models.data.unav import read_unav

        unav_to_llp_csvs(read_unav(a.unav_json), a.out_dir)
    elif a.cmd == "dense":
        from models.data.unav import read_unav

        features, failed = read_clips(a.features_dir, read_unav(a.unav_json))
        for vid, why in sorted(failed.items()):
            print(f"[dense] {vid}: no features ({why})", file=sys.stderr)
        arrays = assemble_dense(a.unav_json, features, load_npz(a.text), a.t_max)
        save_npz(a.out, **arrays)
        print(json.dumps({k: list(v.shape) for k, v in arrays.items()}))
    else:
        from models.data.llp import read_llp

        ann = read_llp(a.weak_csv, a.eval_audio_csv, a.eval_visual_csv)
        available, failed = read_clips(a.features_dir, ann)
        for vid, why in sorted(failed.items()):
            print(f"[llp] {vid}: no features ({why})", file=sys.stderr)
        present, missing = present_videos(ann, available)
        if not present:
            raise SystemExit(f"none of the {len(ann)} videos of {a.weak_csv} has features")
        feats = {v: available[v] for v in present}
        with_gt = a.eval_audio_csv is not None and a.eval_visual_csv is not None
        if with_gt and not any(ann[v]["audio"] or ann[v]["visual"] for v in present):
            # eval CSVs without a row of this split (LLP's own training split): no segment ground truth,
            # rather than an all-zero one that would score every prediction as wrong
            print(f"[llp] {a.weak_csv.name}: the eval CSVs hold no row of its videos: no segment ground truth",
                  file=sys.stderr)
            with_gt = False
        arrays = assemble_split(ann, feats, load_npz(a.text), a.visual, a.audio, generator=not a.no_generator,
                                with_gt=with_gt)
        arrays["missing_ids"] = np.array(missing, dtype=str)
        save_npz(a.out, **arrays)
        print(f"[llp] {a.weak_csv.name}: {len(present)} of {len(ann)} videos have features; {len(missing)} left "
              "out (no clip or no features)", file=sys.stderr)
        print(json.dumps({"videos": len(present), "skipped (no features)": len(missing),
                          "failed during extraction": sorted(failed),
                          "shapes": {k: list(v.shape) for k, v in arrays.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
