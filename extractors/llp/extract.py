"""Raw LLP clips -> per-second features, one ``.npz`` per clip and job (``python -m extractors.llp.extract clip``).

- ``clip``: one clip -> ``<id>.npz`` with one ``(S, D)`` array per requested kind (``S`` = seconds, 10 for an
  LLP clip) and a provenance ``<id>.json`` beside it. Kinds (:mod:`extractors.llp.features`,
  :mod:`extractors.llp.clap`): ``resnet152`` (S, 2048), ``r21d`` (S, 512), ``clip`` (S, 768 for ViT-L/14 |
  512 for ViT-B/32), ``vggish`` (S, 128), ``clap`` (S, 512, joint-space embeddings of each second) and
  ``clap_maps`` (S, 768, HTSAT frame-level maps of the clip per second). Stage-3 combinations
  (:data:`COMBINED`, concatenated by :mod:`models.avvp.inputs`): ``resnet152_r21d`` (S, 2560; feature set 1)
  and ``clip_r21d`` (S, 1280 for ViT-L/14; feature set 2 with ``clap_maps``).
  Why one job per clip: a new clip costs only its own extraction. The jobs run on resident extraction
  workers (``python -m extractors.worker llp --entry extractors.llp.extract -- clip ...``, :mod:`extractors.worker`), which keep the
  networks loaded across clips (:func:`extractors.llp.features.built_once`), since building them (or
  loading multi-GB checkpoints) costs more than embedding a 10 s clip. A clip that fails to decode or
  extract (:class:`~extractors.errors.ContentError`, the clip's own fault) still gets its two files, an
  empty ``.npz`` and ``failed: <reason>`` in the ``.json``, and the job succeeds, so the other clips
  complete and the split job counts it (:func:`read_clips`); any other error (missing or corrupt
  checkpoint, missing temp dir, full disk, CUDA) fails the job. Audio for VGGish is
  the reference chain of :mod:`extractors.audio` (int16 at the source rate, channel mean, resampy to
  16 kHz); a clip without an audio track gets silence as long as the clip (at most 10 s) and
  ``has_audio: false``.

The class prompts' text embeddings (:func:`text_embeddings`) are computed here too; reading the
class lists from the LLP CSVs / UnAV annotations and assembling EAR's ``.npz`` inputs is the training
side's job: :mod:`models.avvp.inputs` (``text``, ``split``, ``dense``, ``csvs``).

Every output is written to a temporary file and renamed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from extractors.errors import ContentError
from extractors.io import load_npz, save_npz, write_json
from extractors.llp.features import COMBINED, N_SEGMENTS, WeightsMode
from extractors.llp.prompts import AUDIO_PROMPT, VISUAL_PROMPT
from extractors.weight_registry import DEFAULT_ROOT

VISUAL_KINDS = ("resnet152", "r21d", "clip")
AUDIO_KINDS = ("vggish", "clap", "clap_maps")


def base_kinds(name: str) -> tuple[str, ...]:
    """``resnet152_r21d`` -> ``("resnet152", "r21d")``; a plain kind -> itself."""
    if name in COMBINED:
        return COMBINED[name]
    if name not in VISUAL_KINDS + AUDIO_KINDS:
        raise ValueError(f"unknown LLP feature {name!r}; known: {sorted((*VISUAL_KINDS, *AUDIO_KINDS, *COMBINED))}")
    return (name,)


def llp_weights_needed(kinds: Sequence[str], clip_model: str = "ViT-L-14", mode: WeightsMode = "pretrained",
                   text: bool = False) -> list[str]:
    """Registry names of the checkpoints (and tokenizer files) the given kinds need, so Snakemake can
    make them job inputs; none for random weights. ``text``: the text encoders (CLIP, CLAP) only."""
    if mode == "random":
        return []
    from extractors.llp.clap import DEFAULT_CHECKPOINT, TOKENIZER_FILES
    from extractors.llp.features import CLIP_WEIGHTS

    needs = {"resnet152": ["resnet152"], "r21d": ["r2plus1d_18"], "vggish": ["vggish"],
             "clip": [CLIP_WEIGHTS[clip_model]], "clap": [DEFAULT_CHECKPOINT, *TOKENIZER_FILES],
             "clap_maps": [DEFAULT_CHECKPOINT, *TOKENIZER_FILES]}
    return sorted({n for k in kinds for n in needs[k]} - ({"vggish"} if text else set()))


def check_kinds(kinds: Sequence[str], max_seconds: int | None = N_SEGMENTS) -> None:
    """A ValueError for kinds that cannot be extracted (a configuration error, not a bad clip)."""
    unknown = set(kinds) - set(VISUAL_KINDS + AUDIO_KINDS)
    if unknown:
        raise ValueError(f"unknown LLP feature kinds {sorted(unknown)}; use {VISUAL_KINDS + AUDIO_KINDS}")
    if max_seconds is None and "vggish" in kinds:
        raise ValueError("vggish follows LLP's 10 s recipe; whole-video extraction supports "
                         f"{VISUAL_KINDS + ('clap', 'clap_maps')}")


def extract_video(video: Path | str, kinds: Sequence[str], mode: WeightsMode = "pretrained",
                  root: Path | str = DEFAULT_ROOT, seed: int = 0, device: str = "cpu",
                  clip_model: str = "ViT-L-14", max_seconds: int | None = N_SEGMENTS
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``{kind: (S, D) float32}`` for the requested base kinds of one clip, and provenance. ``max_seconds``
    None: the whole video (stage-1 CLIP/CLAP features of long UnAV videos), audio segments = visual ones."""
    from extractors.llp.features import extract_llp_visual

    check_kinds(kinds, max_seconds)
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
        from extractors.audio import TARGET_SR, load_audio, write_wav
        from extractors.llp.features import extract_llp_vggish

        wave, meta = load_audio(video, TARGET_SR, max_seconds=float(N_SEGMENTS))  # the reference chain, as media's
        prov["has_audio"] = meta["has_audio"]
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "audio.wav"
            write_wav(wav, wave, TARGET_SR)
            feats["vggish"], p = extract_llp_vggish(wav, mode, root, seed, device)
        prov["weights"]["vggish"] = p.get("weights", p)
    clap_kinds = [k for k in kinds if k in ("clap", "clap_maps")]
    if clap_kinds:
        from extractors.llp.features import extract_llp_clap

        n_seg = next(iter(feats.values())).shape[0] if visual else None
        if n_seg is None and max_seconds is None:
            from extractors.probe import probe

            n_seg = int(probe(video).duration_s)
        cf, p = extract_llp_clap(video, mode, root, seed, device, n_segments=n_seg, max_seconds=max_seconds,
                                 kinds=clap_kinds)
        feats.update(cf)
        for k in clap_kinds:
            prov["weights"][k] = p
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


def extract_clip(video: Path | str, out: Path, kinds: Sequence[str], **kw: Any) -> str | None:
    """Features of one clip into ``out`` (``.npz``, one array per kind) and its provenance ``.json``; the
    failure reason (also in the ``.json``, with an empty ``.npz``) when the clip itself cannot give
    features (:class:`~extractors.errors.ContentError`: undecodable, no usable stream, too short), so one
    bad clip never sinks the others. Everything else (bad kinds, missing or corrupt weights, a missing
    package or temp dir, a full disk, a CUDA error, memory) is raised: the job fails loudly and a good
    clip is never recorded as bad."""
    vid = Path(video).stem
    check_kinds(kinds, kw.get("max_seconds", N_SEGMENTS))
    try:
        feats, prov = extract_video(video, kinds, **kw)
    except ContentError as err:  # the clip's own fault (undecodable, no usable stream, too short): recorded
        reason = f"{type(err).__name__}: {err}"
        print(f"[llp] {video}: {reason}", file=sys.stderr)
        write_json(out.with_suffix(".json"), {"id": vid, "video": str(video), "kinds": list(kinds),
                                              "failed": reason})
        save_npz(out)
        return reason
    write_json(out.with_suffix(".json"), {"id": vid, **prov, "shapes": {k: list(v.shape) for k, v in feats.items()}})
    save_npz(out, **feats)
    return None


def read_clips(folder: Path | str, ids: Iterable[str]) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """``({video id: {kind: (S, D)}}, {video id: failure reason})`` of the clips of ``ids`` that have a
    per-clip file in ``folder`` (ids without one have no clip and are simply absent from both)."""
    feats: dict[str, dict[str, np.ndarray]] = {}
    failed: dict[str, str] = {}
    folder = Path(folder)
    for vid in ids:
        path = folder / f"{vid}.npz"
        if not path.is_file():
            continue
        reason = json.loads(path.with_suffix(".json").read_text()).get("failed")
        if reason:
            failed[vid] = reason
        else:
            feats[vid] = load_npz(path)
    return feats, failed


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from extractors.extract import resolve_device

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pc = sub.add_parser("clip", help="per-second features of one clip, into <id>.npz + <id>.json")
    pc.add_argument("--video", type=Path, required=True, help="the clip (id = file name stem)")
    pc.add_argument("--out", type=Path, required=True,
                    help=".npz (one array per kind; a .json with provenance, or the failure, beside)")
    pc.add_argument("--kinds", required=True, help=f"comma-separated subset of {VISUAL_KINDS + AUDIO_KINDS}")
    pc.add_argument("--device", default="auto")
    pc.add_argument("--max-seconds", type=int, default=N_SEGMENTS, help="0: the whole video (stage-1 data)")
    add_weights_args(pc)
    a = p.parse_args(argv)
    failed = extract_clip(a.video, a.out, [k for k in a.kinds.split(",") if k], mode=a.weights,
                          root=a.weights_root, seed=a.seed, device=resolve_device(a.device),
                          clip_model=a.clip_model, max_seconds=a.max_seconds or None)
    print(json.dumps({"clip": a.video.stem, "failed": failed}))
    return 0


def add_weights_args(sp: argparse.ArgumentParser) -> None:
    """The weights options of every command that builds networks (``clip`` here, ``text`` in
    :mod:`models.avvp.inputs`)."""
    sp.add_argument("--weights", choices=["pretrained", "random"], default="pretrained")
    sp.add_argument("--weights-root", type=Path, default=DEFAULT_ROOT)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--clip-model", default="ViT-L-14")


if __name__ == "__main__":
    raise SystemExit(main())
