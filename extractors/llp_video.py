"""Raw LLP clips -> per-second features -> the ``.npz`` files EAR's stages read (one CLI, three jobs).

- ``video``: one clip -> ``<vid>.npz`` with one ``(S, D)`` array per requested kind (``resnet152``,
  ``r21d``, ``clip``, ``vggish``, ``clap``; :mod:`extractors.llp` and :mod:`extractors.clap`) and a
  provenance ``.json`` beside it. Audio for VGGish is the reference chain of :mod:`extractors.media`
  (int16 at the source rate, channel mean, resampy to 16 kHz); a clip without an audio track gets
  10 s of silence and ``has_audio: false``.
- ``text``: the class prompts' text embeddings, CLIP ``"A photo of <event>"`` (``text_v``) and CLAP
  ``"This is the sound of <event>"`` (``text_a``), for the classes of the LLP CSVs (sorted names).
- ``split``: the per-video files of one split + the CSVs -> ``train.npz`` / ``test.npz`` in the layout of
  :mod:`models.ear_train` (``audio``, ``visual``, ``gen_audio``, ``gen_visual``, ``labels``, ``text_*``,
  ``class_names``, ``video_ids``, and ``gt_a``/``gt_v`` where the eval CSVs cover the video). Clips
  shorter than 10 s are zero-padded to 10 segments (HAN's loader assumes exactly 10).

Every output is written to a temporary file and renamed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from extractors.io import load_npz, save_npz, write_json
from extractors.llp import AUDIO_PROMPT, N_SEGMENTS, VISUAL_PROMPT, WeightsMode
from extractors.weights import DEFAULT_ROOT

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
    from extractors.clap import DEFAULT_CHECKPOINT, TOKENIZER_FILES
    from extractors.llp import CLIP_WEIGHTS

    needs = {"resnet152": ["resnet152"], "r21d": ["r2plus1d_18"], "vggish": ["vggish"],
             "clip": [CLIP_WEIGHTS[clip_model]], "clap": [DEFAULT_CHECKPOINT, *TOKENIZER_FILES]}
    return sorted({n for k in kinds for n in needs[k]} - ({"vggish"} if text else set()))


def decode_audio_16k(video: Path | str, seconds: float = float(N_SEGMENTS)) -> tuple[np.ndarray, bool]:
    """16 kHz mono float waveform of the first ``seconds`` (reference chain), and whether there was audio."""
    from extractors.media import TARGET_SR, decode_audio_int16, probe, reference_audio_chain

    info = probe(video)
    if not info.has_audio:
        return np.zeros(int(round(seconds * TARGET_SR))), False
    wave = reference_audio_chain(decode_audio_int16(Path(video), info), info.sample_rate)
    return wave[: int(round(seconds * TARGET_SR))], True


def extract_video(video: Path | str, kinds: Sequence[str], mode: WeightsMode = "pretrained",
                  root: Path | str = DEFAULT_ROOT, seed: int = 0, device: str = "cpu",
                  clip_model: str = "ViT-L-14") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``{kind: (S, D) float32}`` for the requested base kinds of one clip, and provenance."""
    from extractors.llp import extract_llp_visual

    unknown = set(kinds) - set(VISUAL_KINDS + AUDIO_KINDS)
    if unknown:
        raise ValueError(f"unknown LLP feature kinds {sorted(unknown)}; use {VISUAL_KINDS + AUDIO_KINDS}")
    feats: dict[str, np.ndarray] = {}
    prov: dict[str, Any] = {"video": str(video), "weights_mode": mode, "kinds": list(kinds), "weights": {}}
    visual = [k for k in kinds if k in VISUAL_KINDS]
    if visual:
        vf, vp = extract_llp_visual(video, mode, root, seed, device, kinds=visual, clip_model=clip_model)
        feats.update({k: vf[k] for k in visual})
        prov["weights"].update(vp["weights"])
        prov["visual"] = {k: v for k, v in vp.items() if k != "weights"}
    if "vggish" in kinds:
        from extractors.llp import extract_llp_vggish
        from extractors.media import TARGET_SR, _write_wav

        wave, has_audio = decode_audio_16k(video)
        prov["has_audio"] = has_audio
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "audio.wav"
            _write_wav(wav, wave, TARGET_SR)
            feats["vggish"], p = extract_llp_vggish(wav, mode, root, seed, device)
        prov["weights"]["vggish"] = p.get("weights", p)
    if "clap" in kinds:
        from extractors.llp import extract_llp_clap

        feats["clap"], p = extract_llp_clap(video, mode, root, seed, device)
        prov["weights"]["clap"] = p
    return {k: np.asarray(v, np.float32) for k, v in feats.items()}, prov


def text_embeddings(class_names: Sequence[str], mode: WeightsMode = "pretrained", root: Path | str = DEFAULT_ROOT,
                    seed: int = 0, clip_model: str = "ViT-L-14", audio: bool = True) -> dict[str, np.ndarray]:
    """CLIP (visual prompts) and, if ``audio``, CLAP (audio prompts) text embeddings of the classes."""
    from extractors.llp import build_clip, clip_text_embeddings

    model, _, tokenizer, _ = build_clip(clip_model, mode, root, seed)
    text_v, prompts_v = clip_text_embeddings(model, tokenizer, class_names, VISUAL_PROMPT)
    out = {"text_v": text_v, "prompts_v": np.array(prompts_v), "class_names": np.array(list(class_names))}
    if audio:
        from extractors.clap import build_clap, clap_text_embeddings

        cmodel, ctok, _ = build_clap(mode, root, seed)
        out["text_a"], prompts_a = clap_text_embeddings(cmodel, ctok, class_names, AUDIO_PROMPT)
        out["prompts_a"] = np.array(prompts_a)
    return out


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
    """One split in :mod:`models.ear_train`'s layout. ``annotations``: :func:`models.data.read_llp`
    output; ``features``: ``{vid: {kind: (S, D)}}`` for the videos to include (order kept);
    ``with_gt``: segment ground truth from the eval CSVs (the test split)."""
    from models.data import llp_segment_matrix

    classes = [str(c) for c in text["class_names"]]
    cidx = {c: i for i, c in enumerate(classes)}
    vids = list(features)
    per = [features[v] for v in vids]
    labels = np.zeros((len(vids), len(classes)), np.float32)
    for i, v in enumerate(vids):
        for lab in annotations[v]["labels"]:
            labels[i, cidx[lab]] = 1.0
    out = {"audio": _stack(per, audio, t), "visual": _stack(per, visual, t), "labels": labels,
           "class_names": np.array(classes), "video_ids": np.array(vids), "text_v": text["text_v"]}
    if generator:
        out["gen_visual"], out["gen_audio"] = _stack(per, "clip", t), _stack(per, "clap", t)
        out["text_a"] = text["text_a"]
    if with_gt:
        out["gt_a"] = np.stack([llp_segment_matrix(annotations[v]["audio"], classes, t) for v in vids]).astype(np.uint8)
        out["gt_v"] = np.stack([llp_segment_matrix(annotations[v]["visual"], classes, t) for v in vids]).astype(np.uint8)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from extractors.extract import resolve_device

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pv = sub.add_parser("video", help="per-second features of one LLP clip")
    pv.add_argument("--video", type=Path, required=True)
    pv.add_argument("--out", type=Path, required=True, help=".npz (a provenance .json is written beside)")
    pv.add_argument("--kinds", required=True, help=f"comma-separated subset of {VISUAL_KINDS + AUDIO_KINDS}")
    pv.add_argument("--device", default="auto")
    pt = sub.add_parser("text", help="CLIP/CLAP text embeddings of the class prompts")
    pt.add_argument("--csv", type=Path, nargs="+", required=True, help="LLP CSVs whose labels define the classes")
    pt.add_argument("--out", type=Path, required=True)
    pt.add_argument("--no-audio", action="store_true", help="CLIP only (no CLAP text encoder)")
    ps = sub.add_parser("split", help="assemble one split .npz from per-video features")
    ps.add_argument("--weak-csv", type=Path, required=True)
    ps.add_argument("--eval-audio-csv", type=Path)
    ps.add_argument("--eval-visual-csv", type=Path)
    ps.add_argument("--features-dir", type=Path, required=True,
                    help="folder of per-video <vid>.npz; the split's videos without one are skipped")
    ps.add_argument("--text", type=Path, required=True)
    ps.add_argument("--visual", default="resnet152_r21d")
    ps.add_argument("--audio", default="vggish")
    ps.add_argument("--no-generator", action="store_true", help="no CLIP/CLAP generator features")
    ps.add_argument("--out", type=Path, required=True)
    for sp in (pv, pt):
        sp.add_argument("--weights", choices=["pretrained", "random"], default="pretrained")
        sp.add_argument("--weights-root", type=Path, default=DEFAULT_ROOT)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--clip-model", default="ViT-L-14")
    a = p.parse_args(argv)
    if a.cmd == "video":
        feats, prov = extract_video(a.video, [k for k in a.kinds.split(",") if k], a.weights, a.weights_root,
                                    a.seed, resolve_device(a.device), a.clip_model)
        write_json(a.out.with_suffix(".json"), {**prov, "shapes": {k: list(v.shape) for k, v in feats.items()}})
        save_npz(a.out, **feats)
    elif a.cmd == "text":
        from models.data import read_llp

        classes = sorted({lab for csv in a.csv for row in read_llp(csv).values() for lab in row["labels"]})
        save_npz(a.out, **text_embeddings(classes, a.weights, a.weights_root, a.seed, a.clip_model,
                                         audio=not a.no_audio))
    else:
        from models.data import read_llp

        ann = read_llp(a.weak_csv, a.eval_audio_csv, a.eval_visual_csv)
        present = [v for v in ann if (a.features_dir / f"{v}.npz").is_file()]
        if not present:
            raise SystemExit(f"none of the {len(ann)} videos of {a.weak_csv} has features in {a.features_dir}")
        feats = {v: load_npz(a.features_dir / f"{v}.npz") for v in present}
        arrays = assemble_split(ann, feats, load_npz(a.text), a.visual, a.audio, generator=not a.no_generator,
                                with_gt=a.eval_audio_csv is not None and a.eval_visual_csv is not None)
        save_npz(a.out, **arrays)
        print(json.dumps({"videos": len(present), "skipped (no features)": len(ann) - len(present),
                          "shapes": {k: list(v.shape) for k, v in arrays.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
