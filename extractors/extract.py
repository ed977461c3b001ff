"""The one extraction entry: any subset of the flow store and the extractors of :mod:`extractors.registry`
(i3d, r21d, vggish, a user's) for a list of videos, dispatched through that table.

Used two ways:
- per video by the Snakemake rules (``media``, then ``features`` = visual + VGGish; the single stages
  ``flow`` and one per extractor stay available), one video per job so Snakemake owns skipping,
  retries and parallelism; the jobs run on resident workers (:mod:`extractors.worker`) so the networks
  are built once per worker, not once per video;
- in one process for a list of raw videos (``python -m extractors.extract run VIDEO... --out-dir D
  --kinds i3d,vggish``) with a tqdm bar, e.g. for ``models.run.predict`` on new videos.

Every ``.npy`` gets a provenance ``.json`` beside it (recipe, weights, package version, input hash, T,
seconds per step). Errors are not swallowed (unlike the reference extractor): Snakemake decides what to
skip. The one exception is an error that is the video's own fault (:class:`~extractors.errors.ContentError`,
of which the media stage's ``MediaError`` is one): the per-video ``media`` and ``features`` jobs then
publish a *failure record* as their outputs and exit 0, as LLP's per-clip jobs do
(:func:`extractors.llp.extract.extract_clip`): every ``.json`` output holds ``failed: <reason>`` and
``stage: media | features``, every data output is empty (0-byte mp4/wav, a ``(0, 0)`` ``.npy``). The
feature job of a video whose media job failed passes the media record on; the store leaves the video
out and the summary, ``logs/<ds>/failed_videos.tsv`` and ``metrics.json`` count it
(:func:`read_failure`). Deleting the record (the ``.json``) retries the video. Anything else (a full
disk, a missing temp dir, a CUDA error, missing weights, a bug) fails the job loudly. In ``run`` a bad
video is reported and the other videos still complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from extractors import registry
from extractors.errors import ContentError, failure_reason, read_failure, write_failure  # noqa: F401 - re-exported
from extractors.io import package_version, save_npy, sha256_file, write_json
from extractors.recipes import AUDIO_ALIGNMENTS, SHORT_AUDIO, Recipe, get_recipe  # noqa: F401 - re-exported

log = logging.getLogger("extractors")


def kinds() -> tuple[str, ...]:
    """What ``run``/the single-stage commands accept: the flow store and every registered extractor."""
    return ("flow", *registry.EXTRACTORS)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch  # here, not at the top: the media stage (a torch-free environment) imports this module

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    if getattr(args, "recipe_json", None):
        fields = json.loads(args.recipe_json)
        return Recipe(**fields)
    return get_recipe(args.recipe)


def write_features(out: Path, feats: np.ndarray, provenance: dict[str, Any], recipe: Recipe,
                   source: Path) -> None:
    """Save ``(T, D)`` float32 features and their provenance JSON (same stem, ``.json``)."""
    feats = np.asarray(feats, dtype=np.float32)
    prov = {
        "recipe": recipe.to_dict(),
        "recipe_fingerprint": recipe.fingerprint(),
        "package_version": package_version(),
        "input": str(source),
        "input_sha256": sha256_file(source),
        "T": int(feats.shape[0]),
        "dim": int(feats.shape[1]) if feats.ndim == 2 else None,
        "seconds_per_step": recipe.step_s,
        "window_seconds": recipe.window_s,
        **provenance,
    }
    write_json(out.with_suffix(".json"), prov)
    save_npy(out, feats)


def media_info(wav: Path | None) -> dict[str, Any]:
    """What the audio provenance carries over from the media manifest beside ``wav`` (same stem, ``.json``):
    whether the source had audio and how much silence was appended, so a padded or silent track is
    visible beside the features it gave."""
    manifest = wav.with_suffix(".json") if wav is not None else None
    if manifest is None or not manifest.is_file():
        return {}
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return {"has_audio": m.get("has_audio"), "audio_padded_s": m.get("audio_padded_s", 0.0)}


def run_flow(*, mp4: Path, out: Path, recipe: Recipe, weights_root: Path, device: str, batch_size: int,
             bf16: bool = False) -> None:
    """Store one normalized video's optical flow (for extractors that use flow: kept with ``keep_flow``)."""
    import torch

    from extractors.flow import compute_flow

    t0 = time.perf_counter()
    prov = compute_flow(mp4, recipe, out, device=resolve_device(device), batch_size=batch_size,
                        weights_root=weights_root, dtype=torch.bfloat16 if bf16 else torch.float32)
    write_json(out.with_name(out.name + ".json"), prov)
    log.info("flow: %s -> %s (%d pairs) in %.1f s", mp4, out, prov["n_pairs"], time.perf_counter() - t0)


def run_stage(kind: str, *, mp4: Path | None, wav: Path | None, flow: Path | None, out: Path,
              recipe: Recipe, weights_root: Path, device: str, batch_size: int, bf16: bool = False) -> None:
    """Extract one kind of feature (an extractor of :data:`extractors.registry.EXTRACTORS`, or ``flow``)
    for one normalized video (the Snakemake per-job entry)."""
    if kind == "flow":
        return run_flow(mp4=mp4, out=out, recipe=recipe, weights_root=weights_root, device=device,
                        batch_size=batch_size, bf16=bf16)
    ext = registry.get(kind)
    t0 = time.perf_counter()
    device = resolve_device(device)
    inputs = registry.Inputs(mp4=mp4, wav=wav, recipe=recipe, weights_root=weights_root, device=device,
                             batch_size=batch_size, bf16=bf16, flow=flow if ext.uses_flow else None)
    feats, prov = ext.run(inputs)
    source = wav if ext.reads == "audio" else mp4
    if ext.reads == "audio":
        prov = {**prov, **media_info(wav)}
    if np.shape(feats)[0] == 0:  # shorter than one window: discovery's minimum (Recipe.min_duration_s) prevents it
        raise ContentError(source, f"too short: no complete {kind} window (0 feature steps)")
    if np.ndim(feats) != 2 or np.shape(feats)[1] != ext.dim:
        raise ValueError(f"extractor {kind!r} returned features of shape {np.shape(feats)}; it declares (T, {ext.dim})")
    write_features(out, feats, prov, recipe, source)
    log.info("%s: %s -> %s %s on %s in %.1f s", kind, source, out, tuple(np.shape(feats)), device,
             time.perf_counter() - t0)
    return None


def run_features(*, mp4: Path, wav: Path, visual: str, out_visual: Path, out_audio: Path, recipe: Recipe,
                 weights_root: Path, device: str, batch_size: int, flow_out: Path | None = None,
                 bf16: bool = False) -> None:
    """Every feature of one normalized video in one call (the per-video Snakemake job): the visual
    extractor (``i3d`` = RAFT flow + two-stream I3D, ``r21d``, or a user's) and VGGish on the same device.

    An extractor that uses flow (I3D) computes it in memory from the same decoded frames as its RGB stream
    (identical to computing it from a stored flow file, tested), unless ``flow_out`` asks to keep it on disk."""
    ext = registry.get(visual)
    if ext.reads != "frames":
        raise ValueError(f"visual extractor {visual!r} reads {ext.reads}; expected one of {registry.visual_names()}")
    if ext.uses_flow and flow_out is not None:
        run_flow(mp4=mp4, out=flow_out, recipe=recipe, weights_root=weights_root, device=device,
                 batch_size=batch_size, bf16=bf16)
    run_stage(visual, mp4=mp4, wav=wav, flow=flow_out, out=out_visual, recipe=recipe,
              weights_root=weights_root, device=device, batch_size=batch_size, bf16=bf16)
    run_stage(registry.AUDIO, mp4=mp4, wav=wav, flow=None, out=out_audio, recipe=recipe,
              weights_root=weights_root, device=device, batch_size=max(batch_size, 64))


def features_job(*, mp4: Path, wav: Path, visual: str, out_visual: Path, out_audio: Path,
                 flow_out: Path | None = None, **kw: Any) -> str | None:
    """The per-video ``features`` job: :func:`run_features`, or a failure record when the video's media
    job recorded one (passed on, ``stage: media``) or the video's content fails here (``stage:
    features``). Returns the failure reason (None on success); other errors propagate."""
    records = [out_visual.with_suffix(".json"), out_audio.with_suffix(".json")]
    empties = [out_visual, out_audio]
    if flow_out is not None:
        records.append(flow_out.with_name(flow_out.name + ".json"))
        empties.append(flow_out)
    media = read_failure(mp4.with_suffix(".json"))
    if media is not None:
        write_failure(records, empties, stage=media["stage"], reason=media["failed"], source=mp4)
        return media["failed"]
    try:
        run_features(mp4=mp4, wav=wav, visual=visual, out_visual=out_visual, out_audio=out_audio,
                     flow_out=flow_out, **kw)
    except ContentError as err:
        reason = failure_reason(err)
        write_failure(records, empties, stage="features", reason=reason, source=mp4)
        return reason
    return None


def media_job(src: Path, mp4: Path, wav: Path, **kw: Any) -> str | None:
    """The per-video ``media`` job: :func:`extractors.media.normalize`, or a failure record (``stage:
    media``) when the source cannot be normalized (``MediaError``). Returns the failure reason."""
    from extractors.media import normalize

    try:
        manifest = normalize(src, mp4, wav, **kw)
    except ContentError as err:
        reason = failure_reason(err)
        write_failure([mp4.with_suffix(".json")], [mp4, wav], stage="media", reason=reason, source=src)
        return reason
    log.info("%s -> %s (%d frames, has_audio=%s, audio padded %.2f s)", src, mp4, manifest.n_frames,
             manifest.has_audio, manifest.audio_padded_s)
    return None


def extract_videos(videos: list[Path], out_dir: Path, recipe: Recipe, kinds: list[str],
                   weights_root: Path = Path("resources/weights"), device: str = "auto",
                   batch_size: int = 8, bf16: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """Normalize each raw video and extract ``kinds`` into ``out_dir/<kind>/<video_id>.npy``.

    Returns (done video ids, [(video path, reason)] for videos the media stage rejected).
    """
    from tqdm import tqdm

    from extractors.errors import MediaError
    from extractors.media import normalize
    from extractors.weight_loading import keep_networks_resident

    keep_networks_resident(True)  # one set of networks for the whole list
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    for video in tqdm(videos, desc="extract", unit="video"):
        vid = video.stem
        mp4, wav = out_dir / "media" / f"{vid}.mp4", out_dir / "media" / f"{vid}.wav"
        try:
            normalize(video, mp4, wav, fps=recipe.fps, min_duration_s=recipe.min_duration_s,
                      short_audio=recipe.short_audio, audio_alignment=recipe.audio_alignment)
        except MediaError as err:
            log.error("%s", err)
            failed.append((str(video), str(err)))
            continue
        flow = None
        if "flow" in kinds or any(registry.get(k).uses_flow for k in kinds if k != "flow"):
            flow = out_dir / "flow" / f"{vid}.npz"
            run_flow(mp4=mp4, out=flow, recipe=recipe, weights_root=weights_root, device=device,
                     batch_size=batch_size, bf16=bf16)
        try:
            for kind in (k for k in kinds if k != "flow"):
                run_stage(kind, mp4=mp4, wav=wav, flow=flow, out=out_dir / kind / f"{vid}.npy", recipe=recipe,
                          weights_root=weights_root, device=device, batch_size=batch_size, bf16=bf16)
        except ContentError as err:
            log.error("%s", err)
            failed.append((str(video), str(err)))
            continue
        done.append(vid)
    return done, failed


def main(argv: list[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)  # user extractors first: their names are commands and choices
    pre.add_argument("--extractor-module", action="append", default=[])
    registry.load_modules(pre.parse_known_args(argv)[0].extractor_module)
    known = kinds()
    parser = argparse.ArgumentParser(prog="python -m extractors.extract", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--recipe", default="unav100", help="named recipe (extractors/recipes.py)")
        p.add_argument("--recipe-json", default=None, help="full recipe as JSON (overrides --recipe)")
        p.add_argument("--weights-root", type=Path, default=Path("resources/weights"))
        p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument("--bf16", action="store_true", help="bf16 autocast (off by default: exact recipe)")
        p.add_argument("--extractor-module", action="append", default=[], metavar="FILE",
                       help="a user's extractor file (config `extractor_modules:`, docs/extending.md); repeatable")

    for kind in known:
        p = sub.add_parser(kind, help=f"extract {kind} for one normalized video")
        common(p)
        p.add_argument("--mp4", type=Path)
        p.add_argument("--wav", type=Path)
        p.add_argument("--flow", type=Path, default=None, help="stored flow (extractors using flow: i3d); computed in memory if absent")
        p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("features", help=f"visual ({', '.join(registry.visual_names())}) + {registry.AUDIO} features "
                       "of one normalized video")
    common(p)
    p.add_argument("--mp4", type=Path, required=True)
    p.add_argument("--wav", type=Path, required=True)
    p.add_argument("--visual", choices=registry.visual_names(), required=True)
    p.add_argument("--out-visual", type=Path, required=True)
    p.add_argument("--out-audio", type=Path, required=True)
    p.add_argument("--flow-out", type=Path, default=None, help="also keep the flow store here (extractors using flow: i3d)")
    p = sub.add_parser("media", help="normalize one raw video to a constant-FPS mp4 + 16 kHz mono wav")
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--mp4", type=Path, required=True)
    p.add_argument("--wav", type=Path, required=True)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--min-duration", type=float, default=None,
                   help="shortest usable video in s (the recipe's min_duration_s; default: the media stage's)")
    p.add_argument("--short-audio", choices=SHORT_AUDIO, default="pad",
                   help="audio shorter than the video: pad with silence (default) or keep it (the reference's cut)")
    p.add_argument("--audio-alignment", choices=AUDIO_ALIGNMENTS, default="reference",
                   help="reference: AAC through the reference's ADTS copy (priming kept); trimmed: edit list applied")
    p = sub.add_parser("run", help="normalize + extract for a list of raw videos")
    common(p)
    p.add_argument("videos", type=Path, nargs="+")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--kinds", default="i3d,vggish", help=f"comma-separated subset of {known}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "media":
        extra = {} if args.min_duration is None else {"min_duration_s": args.min_duration}
        media_job(args.src, args.mp4, args.wav, fps=args.fps, short_audio=args.short_audio,
                  audio_alignment=args.audio_alignment, **extra)
        return 0  # published: the outputs or the failure record
    recipe = recipe_from_args(args)
    if args.command == "features":
        features_job(mp4=args.mp4, wav=args.wav, visual=args.visual, out_visual=args.out_visual,
                     out_audio=args.out_audio, recipe=recipe, weights_root=args.weights_root, device=args.device,
                     batch_size=args.batch_size, flow_out=args.flow_out, bf16=args.bf16)
        return 0
    if args.command == "run":
        wanted = [k for k in args.kinds.split(",") if k]
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            parser.error(f"unknown kinds {unknown}; choose from {known}")
        _, failed = extract_videos(args.videos, args.out_dir, recipe, wanted, args.weights_root, args.device,
                                   args.batch_size, args.bf16)
        for path, reason in failed:
            print(f"FAILED {path}: {reason}", file=sys.stderr)
        return 1 if failed else 0
    run_stage(args.command, mp4=args.mp4, wav=args.wav, flow=args.flow, out=args.out, recipe=recipe,
              weights_root=args.weights_root, device=args.device, batch_size=args.batch_size, bf16=args.bf16)
    return 0


if __name__ == "__main__":
    sys.exit(main())
