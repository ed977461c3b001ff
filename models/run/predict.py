"""The one predict entry: event timelines (start, end, class, score) for new videos.

Raw videos go through the extractors (``extractors.extract.extract_videos``) with the recipe the
model was trained on; cached features (the Snakemake ``predict`` rule) skip that step. A video is one
input over its whole length, padded to the model's ``t_max`` when shorter -- the same any-length path
as :mod:`models.run.evaluate`'s full-length evaluation (no chunks, so no event is cut in two).
Outputs per video: ``<vid>.json`` (events + provenance), ``<vid>.csv`` (start_s, end_s, label,
score) and ``<vid>.png`` (timeline).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extractors.io import atomic_path, write_json
from extractors.recipes import RECIPES, Recipe, get_recipe
from models.localizers.base import Detection
from models.run.plots import plot_timeline

log = logging.getLogger("models.run.predict")
RANDOM_BANNER = "WEIGHTS: RANDOM — features from randomly initialised extractors (demo)"


def _batch(audio: np.ndarray, visual: np.ndarray, t_max: int, num_classes: int, duration: float,
           vid: str) -> dict[str, Any]:
    t = min(len(audio), t_max)
    a = np.zeros((1, t_max, audio.shape[1]), np.float32)
    v = np.zeros((1, t_max, visual.shape[1]), np.float32)
    a[0, :t], v[0, :t] = audio[:t], visual[:t]
    mask = np.zeros((1, t_max), bool)
    mask[0, :t] = True
    return {"audio": torch.from_numpy(a), "visual": torch.from_numpy(v), "mask": torch.from_numpy(mask),
            "labels": torch.zeros(1, num_classes), "segments": [torch.zeros(0, 3)], "video_ids": [vid],
            "durations": torch.tensor([duration], dtype=torch.float32),
            "lengths": torch.tensor([t], dtype=torch.int64)}


@torch.no_grad()
def detect_steps(model: torch.nn.Module, audio: np.ndarray, visual: np.ndarray, t_max: int,
                 num_classes: int, duration: float, vid: str = "video") -> list[Detection]:
    """Model detections in feature steps of the whole video (one input of ``max(t_max, T)`` steps)."""
    model.eval()
    device = next(model.parameters()).device
    batch = _batch(audio, visual, max(t_max, len(audio)), num_classes, duration, vid)
    batch = {k: (x.to(device) if torch.is_tensor(x) else x) for k, x in batch.items()}
    out = model(batch)
    return [(float(s), float(e), int(c), float(sc)) for s, e, c, sc in model.detect(out, batch)[0]]


def predict_features(checkpoint: Path | str, audio: np.ndarray, visual: np.ndarray, recipe: Recipe,
                     classes: Sequence[str], duration: float, vid: str = "video",
                     device: str = "cpu") -> list[tuple[float, float, str, float]]:
    """Events in seconds with class names, sorted by start, for one video's cached features."""
    from models.localizers.postprocess import step_events_to_seconds
    from models.run.runtime import model_from_checkpoint

    model = model_from_checkpoint(checkpoint, device=device)
    t = min(len(audio), len(visual))
    num_classes = len(classes)
    if getattr(getattr(model, "cfg", None), "num_classes", num_classes) != num_classes:
        raise ValueError(f"{checkpoint}: model has {model.cfg.num_classes} classes, class list has {num_classes}")
    t_max = int(getattr(getattr(model, "cfg", None), "t_max", recipe.t_max))
    steps = detect_steps(model, audio[:t], visual[:t], t_max, num_classes, duration, vid)
    secs = step_events_to_seconds(steps, recipe, t, duration)
    return sorted(((s, e, classes[c], sc) for s, e, c, sc in secs), key=lambda ev: (ev[0], -ev[3]))


def write_prediction(vid: str, events: Sequence[tuple[float, float, str, float]], duration: float,
                     out_json: Path | str, provenance: dict[str, Any], random_weights: bool) -> None:
    """``<vid>.json`` + ``.csv`` + ``.png`` side by side (all written atomically)."""
    out_json = Path(out_json)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["start_s", "end_s", "label", "score"])
    for s, e, lab, sc in events:
        w.writerow([f"{s:.3f}", f"{e:.3f}", lab, f"{sc:.4f}"])
    with atomic_path(out_json.with_suffix(".csv")) as tmp:
        tmp.write_text(buf.getvalue())
    plot_timeline(out_json.with_suffix(".png"), duration, events, title=vid,
                  banner=RANDOM_BANNER if random_weights else None)
    write_json(out_json, {"video_id": vid, "duration": duration, "weights": "random" if random_weights
                          else "pretrained", "events": [{"start_s": s, "end_s": e, "label": lab, "score": sc}
                                                         for s, e, lab, sc in events], **provenance})


def plot_dataset_timelines(predictions_json: Path | str, dataset: Any, out_dir: Path | str,
                           recipe: Recipe, max_videos: int | None = None,
                           distractors: dict[str, list[tuple[float, float, str, str]]] | None = None) -> int:
    """Ground truth vs. prediction PNGs for the first ``max_videos`` videos of ``dataset`` in id order
    (``None``: every video), with the data's single-modality ``distractors``
    (:func:`models.data.unav.read_distractors`) and each false positive tagged with what it is
    (:func:`models.run.metrics.explain_predictions`). Returns how many were drawn.

    Why bounded: drawing is most of an evaluation's time at benchmark size (2,167 UnAV-100 test videos took
    most of a 216 s evaluation) while a person looks at a few dozen; the metrics always cover every video.
    """
    from models.run.metrics import explain_predictions, load_predictions_json
    from models.run.progress import Heartbeat

    preds = load_predictions_json(predictions_json)
    out_dir = Path(out_dir)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp_dir.exists():  # left by an interrupted run
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    videos = sorted(dataset.video_ids)
    chosen = videos if max_videos is None else videos[: max(0, int(max_videos))]
    log.info("drawing %d of %d test timelines into %s", len(chosen), len(videos), out_dir)
    beat = Heartbeat("timelines drawn", len(chosen))
    for vid in chosen:
        ann = dataset.annotations[vid]
        gt = [(s.start, s.end, s.label, 1.0) for s in ann.segments]
        dis = (distractors or {}).get(vid, [])
        pred = preds.get(vid, [])
        plot_timeline(tmp_dir / f"{vid}.png", ann.duration, pred, gt, title=vid,
                      banner=RANDOM_BANNER if recipe.weights == "random" else None, distractors=dis,
                      tags=explain_predictions(pred, [g[:3] for g in gt], [d[:3] for d in dis]))
        beat.tick()
    beat.finish()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp_dir.replace(out_dir)
    return len(chosen)


def manifest_duration(manifest_json: Path | str) -> float:
    """Source duration in seconds, from the media stage's manifest (``extractors.media``)."""
    return float(json.loads(Path(manifest_json).read_text())["probe"]["duration_s"])


def predict_videos(videos: Sequence[Path], checkpoint: Path, recipe: Recipe, classes: Sequence[str],
                   out_dir: Path, weights_root: Path = Path("resources/weights"),
                   device: str = "auto") -> list[tuple[str, str]]:
    """Raw videos -> features (extractors) -> events. Returns [(video, reason)] for rejected videos."""
    from extractors.extract import extract_videos, resolve_device

    device = resolve_device(device)
    feat_dir = out_dir / "features_cache"
    done, failed = extract_videos(list(videos), feat_dir, recipe, [recipe.visual, "vggish"], weights_root, device)
    for vid in done:
        audio = np.load(feat_dir / "vggish" / f"{vid}.npy")
        visual = np.load(feat_dir / recipe.visual / f"{vid}.npy")
        duration = manifest_duration(feat_dir / "media" / f"{vid}.json")
        events = predict_features(checkpoint, audio, visual, recipe, classes, duration, vid, device)
        write_prediction(vid, events, duration, out_dir / f"{vid}.json",
                         {"checkpoint": str(checkpoint), "recipe": recipe.provenance()}, recipe.weights == "random")
    return failed


def checkpoint_recipe(checkpoint: Path | str, given: Recipe | None = None) -> Recipe:
    """The recipe to extract new videos with: the one stored in the checkpoint at training time.

    Features of another recipe (other frame rate, windows, steps or extractor weights) give timelines that
    look plausible and are wrong, so a ``given`` recipe (``--recipe``, or the Snakemake dataset's) whose
    feature-deciding fields differ from the stored one is refused, naming the fields. Checkpoints written
    before the recipe was stored need ``given``."""
    from extractors.discovery import extraction_fields
    from models.run.runtime import load_checkpoint

    stored = load_checkpoint(checkpoint).get("recipe")
    if stored is None:
        if given is None:
            raise ValueError(f"{checkpoint} was written before checkpoints stored their recipe: give the recipe "
                             "its training features were extracted with, e.g. --recipe demo (see --help)")
        return given
    stored = Recipe(**stored)
    if given is not None:
        a, b = extraction_fields(given), extraction_fields(stored)
        differ = [k for k in sorted(a) if a[k] != b.get(k)]
        if differ:
            raise ValueError(f"{checkpoint} was trained on features of recipe {stored.name!r}; the recipe given "
                             f"({given.name!r}) differs in " + ", ".join(f"{k} ({a[k]!r}, trained with {b.get(k)!r})"
                                                                    for k in differ)
                             + "; leave out --recipe/--weights to use the checkpoint's own")
    return stored


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser (separate so a test can check that every argument is described)."""
    p = argparse.ArgumentParser(
        prog="python -m models.run.predict",
        description="Event timelines for new videos with a trained checkpoint: each video is decoded, its "
                    "features are extracted with the recipe the checkpoint was trained on, and the model's "
                    "events are written per video as OUT_DIR/<video>.json (duration, weights, events with "
                    "start_s, end_s, label, score, checkpoint, recipe), <video>.csv (start_s,end_s,label,score) "
                    "and <video>.png (timeline). Exit status 1 if any video could not be decoded.",
        epilog="example: python -m models.run.predict data/my_videos/*.mp4 "
               "--checkpoint results/demo/models/clasp/best.pt --out-dir results/my_videos")
    p.add_argument("videos", type=Path, nargs="+", help="video files (any format ffmpeg/PyAV decodes)")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="a best.pt written by training, e.g. results/<dataset>/models/<model>/best.pt")
    p.add_argument("--classes", type=Path, default=None,
                   help="class names: classes.txt (one per line) or the training annotation JSON; "
                        "default: the list stored in the checkpoint")
    p.add_argument("--recipe", default=None, choices=sorted(RECIPES),
                   help="feature recipe (extractors.recipes); default: the one stored in the checkpoint. "
                        "Needed only for checkpoints written before the recipe was stored; a recipe "
                        "that differs from the stored one is refused")
    p.add_argument("--weights", choices=["pretrained", "random"], default=None,
                   help="extractor weights of --recipe (random: demos and tests); default: the recipe's")
    p.add_argument("--out-dir", type=Path, required=True,
                   help="folder for <video>.json/.csv/.png (features are cached in OUT_DIR/features_cache)")
    p.add_argument("--weights-root", type=Path, default=Path("resources/weights"),
                   help="folder of the pretrained extractor checkpoints (default: %(default)s; "
                        "`snakemake fetch_all_weights` fills it)")
    p.add_argument("--device", default="auto", help="auto (cuda when visible, else cpu), cpu, cuda or cuda:N")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    given = None
    if args.recipe or args.weights:
        from models.run.runtime import load_checkpoint

        stored = load_checkpoint(args.checkpoint).get("recipe")
        base = get_recipe(args.recipe) if args.recipe else (Recipe(**stored) if stored else None)
        if base is None:
            p.error("--weights needs --recipe for a checkpoint without a stored recipe")
        given = base.replace(weights=args.weights) if args.weights else base
    try:
        recipe = checkpoint_recipe(args.checkpoint, given)
    except ValueError as exc:
        p.error(str(exc))
    if args.classes is None:
        from models.run.runtime import load_checkpoint

        classes = load_checkpoint(args.checkpoint).get("classes")
        if not classes:
            p.error(f"{args.checkpoint} stores no class list: give --classes")
    elif args.classes.suffix == ".json":
        from models.run.pipeline import checkpoint_classes

        classes = checkpoint_classes(args.checkpoint, args.classes, recipe)  # the order it was trained with
    else:
        classes = [c for c in args.classes.read_text().splitlines() if c.strip()]
    failed = predict_videos(args.videos, args.checkpoint, recipe, classes, args.out_dir, args.weights_root,
                            args.device)
    for video, reason in failed:
        print(f"FAILED {video}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
