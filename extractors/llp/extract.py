"""Raw LLP clips -> per-second features -> the ``.npz`` files EAR's stages read (one CLI, three jobs).

- ``videos``: a bucket of clips -> one ``.npz`` with one ``(S, D)`` array per clip and requested kind
  (``resnet152``, ``r21d``, ``clip``, ``vggish``, ``clap``; :mod:`extractors.llp.features`, :mod:`extractors.llp.clap`),
  keys ``<id>::<kind>``, and a provenance ``.json`` beside it. Why buckets: building the networks (or
  loading multi-GB checkpoints) costs more than embedding a 10 s clip, so one job per clip would spend
  LLP's 11,849 clips mostly on start-up. Clips go to buckets by a hash of their id, so a new clip reruns
  only its bucket. A clip that fails is listed under ``failed`` in the ``.json`` and the others complete. Audio for VGGish is the reference chain of :mod:`extractors.media`
  (int16 at the source rate, channel mean, resampy to 16 kHz); a clip without an audio track gets
  10 s of silence and ``has_audio: false``.
- ``text``: the class prompts' text embeddings, CLIP ``"A photo of <event>"`` (``text_v``) and CLAP
  ``"This is the sound of <event>"`` (``text_a``), for the classes of the LLP CSVs (sorted names).
- ``dense``: stage-1 data from a UnAV-format dataset: whole-video per-second CLAP/CLIP features
  (``videos --max-seconds <dense_t_max>``) and AV labels on 1 s steps, with the text embeddings of its classes.
- ``split``: the per-video files of one split + the CSVs -> ``train.npz`` / ``test.npz`` in the layout of
  :mod:`models.avvp.train` (``audio``, ``visual``, ``gen_audio``, ``gen_visual``, ``labels``, ``text_*``,
  ``class_names``, ``video_ids``, and ``gt_a``/``gt_v`` where the eval CSVs cover the video). Clips
  shorter than 10 s are zero-padded to 10 segments (HAN's loader assumes exactly 10).

Every output is written to a temporary file and renamed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from extractors.io import load_npz, save_npz, write_json
from extractors.llp.features import AUDIO_PROMPT, N_SEGMENTS, VISUAL_PROMPT, WeightsMode
from extractors.weights import DEFAULT_ROOT, WeightsError

VISUAL_KINDS = ("resnet152", "r21d", "clip")
AUDIO_KINDS = ("vggish", "clap")
# stage-3 feature names of the config -> the per-video kinds they are built from
COMBINED = {"resnet152_r21d": ("resnet152", "r21d")}


def base_kinds(name: str) -> tuple[str, ...]:
    """``resnet152_r21d`` -> ``("resnet152", "r21d")``; a plain kind -> itself."""
    if name in COMBINED:
        return COMBINED[name]
    if name not in VISUAL_KINDS + AUDIO_KINDS:
        raise ValueError(f"unknown LLP feature {name!r}; known: {sorted((*VISUAL_KINDS, *AUDIO_KINDS, *COMBINED))}")
    return (name,)


def weights_needed(kinds: Sequence[str], clip_model: str = "ViT-L-14", mode: WeightsMode = "pretrained",
                   text: bool = False) -> list[str]:
    """Registry names of the checkpoints (and tokenizer files) the given kinds need, so Snakemake can
    make them job inputs; none for random weights. ``text``: the text encoders (CLIP, CLAP) only."""
    if mode == "random":
        return []
    from extractors.llp.clap import DEFAULT_CHECKPOINT, TOKENIZER_FILES
    from extractors.llp.features import CLIP_WEIGHTS

    needs = {"resnet152": ["resnet152"], "r21d": ["r2plus1d_18"], "vggish": ["vggish"],
             "clip": [CLIP_WEIGHTS[clip_model]], "clap": [DEFAULT_CHECKPOINT, *TOKENIZER_FILES]}
    return sorted({n for k in kinds for n in needs[k]} - ({"vggish"} if text else set()))


def decode_audio_16k(video: Path | str, seconds: float = float(N_SEGMENTS)) -> tuple[np.ndarray, bool]:
    """16 kHz mono float waveform of the first ``seconds`` (reference chain), and whether there was audio."""
    from extractors.media import TARGET_SR, decode_audio_int16, probe, reference_audio_chain

    info = probe(video)
    if not info.has_audio:  # silence as long as the clip (at most `seconds`), like media.normalize
        return np.zeros(int(round(min(info.duration_s or seconds, seconds) * TARGET_SR))), False
    wave = reference_audio_chain(decode_audio_int16(Path(video), info), info.sample_rate)
    return wave[: int(round(seconds * TARGET_SR))], True


def extract_video(video: Path | str, kinds: Sequence[str], mode: WeightsMode = "pretrained",
                  root: Path | str = DEFAULT_ROOT, seed: int = 0, device: str = "cpu",
                  clip_model: str = "ViT-L-14", max_seconds: int | None = N_SEGMENTS
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``{kind: (S, D) float32}`` for the requested base kinds of one clip, and provenance. ``max_seconds``
    None: the whole video (stage-1 CLIP/CLAP features of long UnAV videos), audio segments = visual ones."""
    from extractors.llp.features import extract_llp_visual

    unknown = set(kinds) - set(VISUAL_KINDS + AUDIO_KINDS)
    if unknown:
        raise ValueError(f"unknown LLP feature kinds {sorted(unknown)}; use {VISUAL_KINDS + AUDIO_KINDS}")
    if max_seconds is None and "vggish" in kinds:
        raise ValueError("vggish follows LLP's 10 s recipe; whole-video extraction supports "
                         f"{VISUAL_KINDS + ('clap',)}")
    feats: dict[str, np.ndarray] = {}
    prov: dict[str, Any] = {"video": str(video), "weights_mode": mode, "kinds": list(kinds), "weights": {},
                            "max_seconds": max_seconds}
    visual = [k for k in kinds if k in VISUAL_KINDS]
    if visual:
        vf, vp = extract_llp_visual(video, mode, root, seed, device, kinds=visual, clip_model=clip_model,
                                    max_seconds=max_seconds)
        feats.update({k: vf[k] for k in visual})
        prov["weights"].update(vp["weights"])
        prov["visual"] = {k: v for k, v in vp.items() if k != "weights"}
    if "vggish" in kinds:
        from extractors.llp.features import extract_llp_vggish
        from extractors.media import TARGET_SR, _write_wav

        wave, has_audio = decode_audio_16k(video)
        prov["has_audio"] = has_audio
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "audio.wav"
            _write_wav(wav, wave, TARGET_SR)
            feats["vggish"], p = extract_llp_vggish(wav, mode, root, seed, device)
        prov["weights"]["vggish"] = p.get("weights", p)
    if "clap" in kinds:
        from extractors.llp.features import extract_llp_clap

        n_seg = next(iter(feats.values())).shape[0] if visual else None
        if n_seg is None and max_seconds is None:
            from extractors.media import probe

            n_seg = int(probe(video).duration_s)
        feats["clap"], p = extract_llp_clap(video, mode, root, seed, device, n_segments=n_seg,
                                            max_seconds=max_seconds)
        prov["weights"]["clap"] = p
    return {k: np.asarray(v, np.float32) for k, v in feats.items()}, prov


def text_embeddings(class_names: Sequence[str], mode: WeightsMode = "pretrained", root: Path | str = DEFAULT_ROOT,
                    seed: int = 0, clip_model: str = "ViT-L-14", encoders: bool = True) -> dict[str, np.ndarray]:
    """The class list and, with ``encoders`` (the generator needs them), CLIP text embeddings of the visual
    prompts (``text_v``) and CLAP text embeddings of the audio prompts (``text_a``)."""
    out = {"class_names": np.array(list(class_names))}
    if encoders:
        from extractors.llp.clap import build_clap, clap_text_embeddings
        from extractors.llp.features import build_clip, clip_text_embeddings

        model, _, tokenizer, _ = build_clip(clip_model, mode, root, seed)
        out["text_v"], prompts_v = clip_text_embeddings(model, tokenizer, class_names, VISUAL_PROMPT)
        out["prompts_v"] = np.array(prompts_v)
        cmodel, ctok, _ = build_clap(mode, root, seed)
        out["text_a"], prompts_a = clap_text_embeddings(cmodel, ctok, class_names, AUDIO_PROMPT)
        out["prompts_a"] = np.array(prompts_a)
    return out


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


def assemble_split(annotations: dict[str, dict[str, Any]], features: dict[str, dict[str, np.ndarray]],
                   text: dict[str, np.ndarray], visual: str, audio: str, generator: bool = True,
                   with_gt: bool = False, t: int = N_SEGMENTS) -> dict[str, np.ndarray]:
    """One split in :mod:`models.avvp.train`'s layout. ``annotations``: :func:`models.data.dataset.read_llp`
    output; ``features``: ``{vid: {kind: (S, D)}}`` for the videos to include (order kept);
    ``with_gt``: segment ground truth from the eval CSVs (the test split)."""
    from models.data.dataset import llp_segment_matrix

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


SEP = "::"  # bucket-file keys: "<video id>::<kind>"


def bucket_of(video_id: str, n_buckets: int) -> int:
    """Stable bucket of a clip (CRC-32 of its id): a new clip reruns only its own bucket's job."""
    return zlib.crc32(video_id.encode("utf-8")) % n_buckets


def extract_bucket(videos: Sequence[Path], out: Path, kinds: Sequence[str], **kw: Any) -> dict[str, str]:
    """Features of several clips into one file (networks built once); a clip that fails is reported in
    the provenance ``.json`` (``failed``: id -> reason) and left out, the others complete."""
    arrays: dict[str, np.ndarray] = {}
    provs: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for video in tqdm(videos, desc=f"LLP features -> {out.name}", unit="clip"):
        vid = Path(video).stem
        try:
            feats, prov = extract_video(video, kinds, **kw)
        except WeightsError:  # missing / corrupt checkpoint: every clip would fail the same way
            raise
        except Exception as err:  # one bad clip must not sink the others
            failed[vid] = f"{type(err).__name__}: {err}"
            print(f"[llp] {video}: {failed[vid]}", file=sys.stderr)
            continue
        arrays.update({f"{vid}{SEP}{k}": v for k, v in feats.items()})
        provs[vid] = {**prov, "shapes": {k: list(v.shape) for k, v in feats.items()}}
    if failed and not provs:
        raise RuntimeError(f"every clip of {out.name} failed, e.g. {next(iter(failed.items()))}")
    write_json(out.with_suffix(".json"), {"videos": provs, "failed": failed})
    save_npz(out, **arrays)
    return failed


def read_buckets(paths: Sequence[Path | str]) -> dict[str, dict[str, np.ndarray]]:
    """``{video id: {kind: (S, D)}}`` from bucket files."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for path in paths:
        for key, arr in load_npz(path).items():
            vid, kind = key.rsplit(SEP, 1)
            out.setdefault(vid, {})[kind] = arr
    return out


def assemble_dense(unav_json: Path | str, features: dict[str, dict[str, np.ndarray]], text: dict[str, np.ndarray],
                   t_max: int) -> dict[str, np.ndarray]:
    """Stage-1 data (``models.avvp.train`` dense layout) from UnAV-format annotations and per-second CLAP
    (audio) / CLIP (visual) features of the annotated videos that have a feature file; AV labels on 1 s
    steps (:func:`models.avvp.train.dense_arrays`, step ``t`` centred at ``t + 0.5`` s)."""
    from extractors.recipes import get_recipe
    from models.avvp.train import dense_arrays
    from models.data.dataset import read_unav

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
    from extractors.extract import resolve_device

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pv = sub.add_parser("videos", help="per-second features of clips, into one bucket file")
    pv.add_argument("--videos", type=Path, nargs="+", required=True, help="clips (id = file name stem)")
    pv.add_argument("--out", type=Path, required=True,
                    help="bucket .npz (keys <id>::<kind>; a .json with provenance and failures beside)")
    pv.add_argument("--kinds", required=True, help=f"comma-separated subset of {VISUAL_KINDS + AUDIO_KINDS}")
    pv.add_argument("--device", default="auto")
    pv.add_argument("--max-seconds", type=int, default=N_SEGMENTS, help="0: the whole video (stage-1 data)")
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
    ps.add_argument("--features", type=Path, nargs="+", required=True,
                    help="bucket files; the split's videos without features are skipped")
    ps.add_argument("--text", type=Path, required=True)
    ps.add_argument("--visual", default="resnet152_r21d")
    ps.add_argument("--audio", default="vggish")
    ps.add_argument("--no-generator", action="store_true", help="no CLIP/CLAP generator features")
    ps.add_argument("--out", type=Path, required=True)
    pc = sub.add_parser("csvs", help="LLP's four CSVs from UnAV-format annotations (models.data.dataset.unav_to_llp_csvs)")
    pc.add_argument("--unav-json", type=Path, required=True)
    pc.add_argument("--out-dir", type=Path, required=True)
    pd = sub.add_parser("dense", help="stage-1 dense AV data from UnAV-format annotations + per-second CLAP/CLIP")
    pd.add_argument("--unav-json", type=Path, required=True)
    pd.add_argument("--features", type=Path, nargs="+", required=True, help="bucket files with clip and clap")
    pd.add_argument("--text", type=Path, required=True, help="text embeddings of the annotation classes")
    pd.add_argument("--t-max", type=int, default=60, help="steps (seconds) per video; longer ones are cut")
    pd.add_argument("--out", type=Path, required=True)
    for sp in (pv, pt):
        sp.add_argument("--weights", choices=["pretrained", "random"], default="pretrained")
        sp.add_argument("--weights-root", type=Path, default=DEFAULT_ROOT)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--clip-model", default="ViT-L-14")
    a = p.parse_args(argv)
    if a.cmd == "videos":
        failed = extract_bucket(a.videos, a.out, [k for k in a.kinds.split(",") if k], mode=a.weights,
                                root=a.weights_root, seed=a.seed, device=resolve_device(a.device),
                                clip_model=a.clip_model, max_seconds=a.max_seconds or None)
        print(json.dumps({"clips": len(a.videos), "failed": failed}))
    elif a.cmd == "text":
        from models.data.dataset import read_llp

        if a.unav_json is not None:
            from models.data.dataset import class_list, read_unav

            classes = class_list(read_unav(a.unav_json))
        else:
            classes = sorted({lab for csv in a.csv for row in read_llp(csv).values() for lab in row["labels"]})
        save_npz(a.out, **text_embeddings(classes, a.weights, a.weights_root, a.seed, a.clip_model,
                                         encoders=not a.no_encoders))
    elif a.cmd == "csvs":
        from models.data.dataset import read_unav, unav_to_llp_csvs

        unav_to_llp_csvs(read_unav(a.unav_json), a.out_dir)
    elif a.cmd == "dense":
        arrays = assemble_dense(a.unav_json, read_buckets(a.features), load_npz(a.text), a.t_max)
        save_npz(a.out, **arrays)
        print(json.dumps({k: list(v.shape) for k, v in arrays.items()}))
    else:
        from models.data.dataset import read_llp

        ann = read_llp(a.weak_csv, a.eval_audio_csv, a.eval_visual_csv)
        available = read_buckets(a.features)
        failed = {v: why for f in a.features for v, why in json.loads(f.with_suffix(".json").read_text())["failed"].items()
                  if v in ann}
        for vid, why in sorted(failed.items()):
            print(f"[llp] {vid}: no features ({why})", file=sys.stderr)
        present = [v for v in ann if v in available]
        if not present:
            raise SystemExit(f"none of the {len(ann)} videos of {a.weak_csv} has features")
        feats = {v: available[v] for v in present}
        arrays = assemble_split(ann, feats, load_npz(a.text), a.visual, a.audio, generator=not a.no_generator,
                                with_gt=a.eval_audio_csv is not None and a.eval_visual_csv is not None)
        save_npz(a.out, **arrays)
        print(json.dumps({"videos": len(present), "skipped (no features)": len(ann) - len(present),
                          "failed during extraction": sorted(failed),
                          "shapes": {k: list(v.shape) for k, v in arrays.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
