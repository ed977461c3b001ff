"""LLP (AVVP) feature extractors: 10 s clips, one feature per 1 s segment (docs/recipes.md, "LLP").

Feature sets of the stage-3 (AVVP) model, per 10 s clip (``S = 10``; ``D_clip`` = 768 for ViT-L/14, 512
for ViT-B/32); docs/recipes.md, "LLP", has the table:

- Set 1 (HAN / most AVVP work): visual ``resnet152_r21d`` = ResNet-152 frame features averaged per second
  ``(S, 2048)`` + R(2+1)D-18 per second ``(S, 512)`` -> ``(S, 2560)``; audio ``vggish`` ``(S, 128)``.
- Set 2 (VALOR++ ``scripts/train_valor++.sh``, reused by UWAV and EAR): visual ``clip_r21d`` = CLIP image
  embeddings ``(S, D_clip)`` + the same R(2+1)D-18 ``(S, 512)`` -> ``(S, D_clip + 512)`` (VALOR's
  ``MMIL_Net`` projects both with linear layers and fuses them with a third, all linear, so one linear
  layer on the concatenation spans it); audio ``clap_maps`` = the CLAP HTSAT frame-level feature maps
  ``(64, 768)`` of the whole clip, averaged per second -> ``(S, 768)``
  (:func:`extractors.llp.clap.clap_feature_maps`, exact for a linear input layer).
- EAR's pseudo-label generator (stages 1-2) reads ``clip`` ``(S, D_clip)`` and ``clap`` ``(S, 512)``: CLAP
  joint-space embeddings of each 1 s segment (VALOR's pseudo-label recipe), scored against the CLIP / CLAP
  text embeddings of "A photo of <event>" / "This is the sound of <event>". ``visual: clip`` /
  ``audio: clap`` for stage 3 are kept as a cheaper, non-reference option.

Recipe (the AVVP-ECCV20 release describes frames sampled at 8 fps; the code that produced its
features is not public, so the choices below are ours and are recorded in every provenance dict):

- Frames: ffmpeg ``fps=8`` filter (ffmpeg's own semantics, via ``imageio_ffmpeg``, argument list,
  no shell) on the source video, RGB24 (:func:`extractors.frames.iter_frames` with ``fps=8``). Segment ``k`` =
  frames ``[8k, 8k+8)`` = seconds ``[k, k+1)``.
  Segments: ``min(n_segments, floor(n_frames / 8))``; an incomplete last second is dropped.
- ResNet-152 (torchvision architecture, ``fc`` removed, global-average-pool output): each frame
  resized (short side 256, bilinear, antialiased) and centre-cropped to 224, ImageNet mean/std;
  the 8 frame features of a segment are averaged.
- R(2+1)D-18 (torchvision architecture, ``fc`` removed): the 8 frames of a segment form one clip,
  with the video_features R(2+1)D transform (/255, bilinear 128x171, Kinetics mean/std, crop 112),
  shared with :mod:`extractors.r21d`.
- CLIP (open_clip architecture, created with ``pretrained=None`` and QuickGELU as in OpenAI's
  weights, then weights from the registry), following VALOR's ``utils/clip_preprocess.py`` (the
  features UWAV/EAR reuse): OpenAI CLIP ViT-L/14 (HF ``openai/clip-vit-large-patch14``) by default;
  **one frame per segment**, frame indices ``round(linspace(0, n - 1, S))`` over the 8 fps frames;
  squash-resize to 224x224 (bilinear, antialiased), OpenAI mean/std; L2-normalised image embeddings.
- VGGish: :func:`extractors.vggish.extract_vggish` with the reference's non-overlapping 0.96 s
  examples (10 per 10 s clip, as the AVVP-ECCV20 release has); example ``t`` covers
  ``[0.96 t, 0.96 t + 0.96)`` s, i.e. it drifts 0.04 s per segment from second ``t``.
- CLAP (:mod:`extractors.llp.clap`, a port of LAION-CLAP without the ``laion_clap`` package), following
  VALOR's ``utils/clap_preprocess.py``: checkpoint ``630k-fusion-best.pt`` (HTSAT-tiny + RoBERTa,
  ``enable_fusion=True``, laion_clap ``model_id=2``) by default; audio decoded from the source video at
  48 kHz mono (ffmpeg, soxr). ``clap``: ``S`` equal segments (VALOR's ``round(linspace(0, N, S + 1))``
  starts, ``N // S`` long; ``S`` = the 8 fps visual count, 10 for a 10 s clip), **each segment embedded on
  its own** (int16 round trip, repeat-pad to 10 s, HTK log-mel of the fusion input) -> ``(S, 512)``
  L2-normalised audio embeddings. ``clap_maps``: the whole clip in one HTSAT pass (index-resampled to
  exactly 480,000 samples as VALOR does) -> ``feat_maps (64, 768)`` -> per second ``(S, 768)``. Inputs
  longer than 10 s take laion_clap's fusion branch (:meth:`extractors.llp.clap.HTSAT.prepare`); LLP's
  inputs never are, and long videos are cut into 10 s windows for ``clap_maps`` to stay time-aligned.
- Class prompts: ``"A photo of <event>"`` / ``"This is the sound of <event>"`` (EAR §III-B) with
  LLP's underscores turned into spaces ("Violin_fiddle" -> "A photo of Violin fiddle"), case kept
  unless ``lowercase=True`` (VALOR lower-cases its CLAP captions, and
:func:`extractors.llp.clap.clap_text_embeddings` does so by default). Text embeddings L2-normalised.

Weights: ``mode='pretrained'`` loads the registered checkpoint (never falls back);
``mode='random'`` is explicit, seeded, and recorded as ``"weights": "random"`` in provenance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from extractors.audio import load_audio
from extractors.errors import ContentError
from extractors.frames import iter_frames, window_groups
from extractors.llp.prompts import AUDIO_PROMPT, VISUAL_PROMPT, format_prompts  # noqa: F401 - part of this API
from extractors.weight_loading import build_model_weights, resident_network
from extractors.weight_registry import DEFAULT_ROOT

FPS = 8
N_SEGMENTS = 10
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# registry names of the CLIP checkpoints (see the report: the lead adds them to extractors.weight_registry)
CLIP_WEIGHTS = {"ViT-L-14": "clip_vit_l14_openai", "ViT-B-32": "clip_vit_b32_openai"}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
WeightsMode = Literal["pretrained", "random"]
# stage-3 feature names of the config -> the per-second kinds they concatenate, in this order (set 1, set 2)
COMBINED = {"resnet152_r21d": ("resnet152", "r21d"), "clip_r21d": ("clip", "r21d")}


# ----------------------------------------------------------------------------- frames
def decode_frames(video_path: Path | str, fps: float = FPS, max_seconds: int | None = N_SEGMENTS) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB frames of the ffmpeg ``fps`` filter, at most ``max_seconds`` s (None: all):
    the LLP recipe of the one frame source (:func:`extractors.frames.iter_frames`), whose errors it keeps."""
    return np.stack(list(iter_frames(video_path, None, fps=fps, max_seconds=max_seconds)))


def segment_frames(frames: np.ndarray, fps: int = FPS, n_segments: int | None = N_SEGMENTS) -> np.ndarray:
    """``(S, fps, H, W, 3)``: whole seconds only, at most ``n_segments`` (None: all); the windows of
    :func:`extractors.frames.window_groups` with ``span = step = fps``."""
    segs = [np.stack(buf) for _, _, buf in window_groups(frames, fps, fps, max_windows=n_segments)]
    if not segs:
        raise ValueError(f"video shorter than one {fps}-frame segment ({frames.shape[0]} frames)")
    return np.stack(segs)


def imagenet_transform(frames: np.ndarray, short_side: int = 256, crop: int = 224) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> ``(N, 3, crop, crop)``: PIL bilinear resize, centre crop, ImageNet norm."""
    out = []
    for f in frames:
        h, w = f.shape[:2]
        sc = short_side / min(h, w)
        nw, nh = max(crop, int(round(w * sc))), max(crop, int(round(h * sc)))
        img = np.asarray(Image.fromarray(f).resize((nw, nh), Image.BILINEAR))
        i, j = (nh - crop) // 2, (nw - crop) // 2
        out.append(img[i:i + crop, j:j + crop])
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


# ----------------------------------------------------------------------------- models
def built_once(weights: Sequence[str], mode: WeightsMode, root: Path | str, builder: Any, *args: Any) -> Any:
    """``builder(*args)`` (a tuple whose last item is the provenance), memoised by
    :func:`extractors.weight_loading.resident_network`: while :func:`~extractors.weight_loading.keep_networks_resident` is
    on (the extraction worker serving one per-clip job after another), each network is built once per process
    and rebuilt only when a checkpoint file of ``weights`` (registry names) changes; off (library calls,
    tests), every call builds fresh modules. Building (or loading and hashing a checkpoint) costs more than
    embedding one 10 s clip."""
    key = (f"{builder.__module__}.{builder.__qualname__}", *map(str, args))

    def build() -> tuple[tuple[Any, ...], dict[str, Any]]:
        *parts, prov = builder(*args)
        return tuple(parts), prov

    parts, prov = resident_network(key, list(weights), mode, root, build)
    return (*parts, prov)


def build_resnet152(mode: WeightsMode, root: Path | str = DEFAULT_ROOT, seed: int = 0) -> tuple[nn.Module, dict]:
    """torchvision ResNet-152 with the classifier removed (2048-D pooled output)."""
    from torchvision.models import resnet152

    m = resnet152(weights=None)
    prov = build_model_weights(m, "resnet152", mode, root, seed)
    m.fc = nn.Identity()
    return m.eval(), prov


def build_r2plus1d_18(mode: WeightsMode, root: Path | str = DEFAULT_ROOT, seed: int = 0) -> tuple[nn.Module, dict]:
    """torchvision R(2+1)D-18 with the classifier removed (512-D pooled output)."""
    from torchvision.models.video import r2plus1d_18

    m = r2plus1d_18(weights=None)
    prov = build_model_weights(m, "r2plus1d_18", mode, root, seed)
    m.fc = nn.Identity()
    return m.eval(), prov


def build_clip(model_name: str = "ViT-L-14", mode: WeightsMode = "pretrained", root: Path | str = DEFAULT_ROOT,
               seed: int = 0) -> tuple[nn.Module, Any, Any, dict]:
    """open_clip model (architecture only, ``pretrained=None``), its eval transform and tokenizer.

    Pretrained weights come from the registry entry ``CLIP_WEIGHTS[model_name]`` (an open_clip
    state dict); random weights are seeded and labelled.
    """
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None,
                                                                     force_quick_gelu=True)
    if mode == "pretrained" and model_name not in CLIP_WEIGHTS:
        raise KeyError(f"no registered CLIP checkpoint for {model_name!r}; known: {sorted(CLIP_WEIGHTS)}")
    prov = build_model_weights(model, CLIP_WEIGHTS.get(model_name, f"clip_{model_name}"), mode, root, seed)
    prov["clip_model"] = model_name
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name), prov


@torch.no_grad()
def clip_text_embeddings(model: nn.Module, tokenizer: Any, class_names: Sequence[str],
                         template: str = VISUAL_PROMPT, lowercase: bool = False) -> tuple[np.ndarray, list[str]]:
    """``(C, D)`` float32 L2-normalised CLIP text embeddings of the class prompts, and the prompts."""
    prompts = format_prompts(class_names, template, lowercase)
    emb = model.encode_text(tokenizer(prompts), normalize=True)
    return emb.float().numpy(), prompts


# ----------------------------------------------------------------------------- extraction
@torch.no_grad()
def resnet_features(model: nn.Module, segs: np.ndarray, batch: int = 32, device: str = "cpu") -> np.ndarray:
    """``(S, fps, H, W, 3)`` -> ``(S, 2048)``: frame features averaged per second."""
    s, k = segs.shape[:2]
    flat = segs.reshape(s * k, *segs.shape[2:])
    outs = [model(imagenet_transform(flat[i:i + batch]).to(device)).float().cpu() for i in range(0, len(flat), batch)]
    return torch.cat(outs).view(s, k, -1).mean(1).numpy().astype(np.float32)


@torch.no_grad()
def r21d_features(model: nn.Module, segs: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``(S, fps, H, W, 3)`` -> ``(S, 512)``: one clip of ``fps`` frames per second."""
    from extractors.r21d import transform_frames

    clips = torch.stack([transform_frames(seg) for seg in segs]).to(device)  # (S, 3, fps, 112, 112)
    return model(clips).float().cpu().numpy().astype(np.float32)


def clip_frame_indices(n_frames: int, n_segments: int) -> np.ndarray:
    """VALOR's frame choice: ``round(linspace(0, n_frames - 1, n_segments))``."""
    return np.round(np.linspace(0, n_frames - 1, n_segments)).astype(np.int64)


def clip_transform(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> ``(N, 3, size, size)``: /255, squash-resize (bilinear, antialiased),
    OpenAI CLIP mean/std (VALOR's ``ToTensor, Resize((224, 224)), Normalize``)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                        antialias=True)
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


@torch.no_grad()
def clip_image_features(model: nn.Module, segs: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``(S, fps, H, W, 3)`` -> ``(S, D)`` L2-normalised CLIP embeddings, one frame per segment."""
    s, k = segs.shape[:2]
    flat = segs.reshape(s * k, *segs.shape[2:])
    frames = flat[clip_frame_indices(len(flat), s)]
    emb = model.encode_image(clip_transform(frames).to(device), normalize=True)
    return emb.float().cpu().numpy().astype(np.float32)


def extract_llp_visual(video_path: Path | str, mode: WeightsMode = "pretrained", root: Path | str = DEFAULT_ROOT,
                       seed: int = 0, device: str = "cpu", kinds: Sequence[str] = ("resnet152", "r21d"),
                       clip_model: str = "ViT-L-14", max_seconds: int | None = N_SEGMENTS
                       ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-second visual features of one LLP clip: ``{"resnet152": (S, 2048), "r21d": (S, 512),
    "clip": (S, D)}`` (the kinds asked for) and a provenance dict (weights per kind). ``max_seconds``:
    LLP's 10 s; None reads the whole video (stage-1 features of long UnAV videos)."""
    frames = decode_frames(video_path, max_seconds=max_seconds)
    if frames.shape[0] < FPS:
        raise ContentError(video_path, f"too short: {frames.shape[0]} frames at {FPS} fps is less than one 1 s segment")
    segs = segment_frames(frames, n_segments=max_seconds)
    feats: dict[str, np.ndarray] = {}
    prov: dict[str, Any] = {"recipe": {"fps": FPS, "segment_s": 1.0, "n_segments": max_seconds},
                            "n_frames": int(frames.shape[0]), "T": int(segs.shape[0]), "weights": {}}
    for kind in kinds:
        if kind == "resnet152":
            m, p = built_once(["resnet152"], mode, root, build_resnet152, mode, root, seed)
            feats[kind] = resnet_features(m.to(device), segs, device=device)
        elif kind == "r21d":
            m, p = built_once(["r2plus1d_18"], mode, root, build_r2plus1d_18, mode, root, seed)
            feats[kind] = r21d_features(m.to(device), segs, device=device)
        elif kind == "clip":
            names = [CLIP_WEIGHTS[clip_model]] if clip_model in CLIP_WEIGHTS else []  # else build_clip says why
            m, _, _, p = built_once(names, mode, root, build_clip, clip_model, mode, root, seed)
            feats[kind] = clip_image_features(m.to(device), segs, device=device)
        else:
            raise ValueError(f"unknown LLP visual feature kind {kind!r}; use resnet152, r21d or clip")
        prov["weights"][kind] = p
    for combined, parts in COMBINED.items():
        if all(k in feats for k in parts):
            feats[combined] = np.concatenate([feats[k] for k in parts], axis=1)
    return feats, prov


def extract_llp_vggish(wav_path: Path | str, mode: WeightsMode = "pretrained", root: Path | str = DEFAULT_ROOT,
                       seed: int = 0, device: str = "cpu") -> tuple[np.ndarray, dict[str, Any]]:
    """VGGish per second (hop 0.96 s as the LLP release, at most 10 examples), reusing
    :func:`extractors.vggish.extract_vggish` with an LLP recipe."""
    from extractors.recipes import get_recipe
    from extractors.vggish import extract_vggish

    recipe = get_recipe("llp", weights=mode, seed=seed)
    feats, prov = extract_vggish(Path(wav_path), recipe, Path(root), device)
    return feats[:N_SEGMENTS], prov


CLAP_KINDS = ("clap", "clap_maps")


def extract_llp_clap(video_path: Path | str, mode: WeightsMode = "pretrained", root: Path | str = DEFAULT_ROOT,
                     seed: int = 0, device: str = "cpu", checkpoint: str | None = None,
                     n_segments: int | None = None, max_seconds: int | None = N_SEGMENTS,
                     kinds: Sequence[str] = ("clap",)) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-second CLAP features of one LLP clip, ``{kind: (S, D)}``, and provenance.

    ``clap``: ``(S, 512)`` L2-normalised joint-space embeddings, each 1 s segment embedded alone (VALOR's
    pseudo-label recipe; what EAR's generator compares with the CLAP text embeddings). ``clap_maps``:
    ``(S, 768)`` HTSAT frame-level feature maps of the whole clip in one pass, averaged per second
    (VALOR's audio features for its AVVP model, :func:`extractors.llp.clap.clap_feature_maps`).
    Audio comes from the source video at 48 kHz (not the pipeline's 16 kHz wav, which has nothing above
    8 kHz while CLAP's mel bank reaches 14 kHz). ``n_segments`` overrides ``S`` (e.g. the visual ``T``).
    ``max_seconds`` None reads the whole audio (then give ``n_segments``; the default counts at most 10).
    The model stays resident in the extraction worker (:func:`built_once`).
    """
    from extractors.llp import clap

    unknown = set(kinds) - set(CLAP_KINDS)
    if unknown or not kinds:
        raise ValueError(f"CLAP feature kinds must be a non-empty subset of {CLAP_KINDS}, got {list(kinds)}")
    wave, meta = load_audio(video_path, clap.SAMPLE_RATE, max_seconds, resampler="soxr")  # librosa's soxr_hq
    if n_segments is None and clap.default_n_segments(wave.shape[0]) < 1:
        raise ContentError(video_path, f"too short: {wave.shape[0] / clap.SAMPLE_RATE:.2f} s of audio is less than "
                                       "one 1 s segment")
    ckpt = checkpoint or clap.DEFAULT_CHECKPOINT
    model, _, wprov = built_once([ckpt, *clap.TOKENIZER_FILES], mode, root, clap.build_clap, mode, root, seed, ckpt)
    model = model.to(device)
    feats: dict[str, np.ndarray] = {}
    recipe: dict[str, Any] = {"sample_rate": clap.SAMPLE_RATE, "frontend": wprov["frontend"],
                              "max_seconds": max_seconds, "int16_roundtrip": True}
    if "clap" in kinds:
        feats["clap"] = clap.clap_audio_features(model, wave, n_segments=n_segments, device=device, seed=seed)
        recipe["clap"] = ("VALOR get_audio_embedding: round(linspace(0, N, S + 1)) starts, N // S samples each, "
                          "each segment embedded alone, repeatpad to 480000, projected + L2-normalised (S, 512)")
    if "clap_maps" in kinds:
        feats["clap_maps"] = clap.clap_feature_maps(model, wave, n_segments=n_segments, device=device)
        recipe["clap_maps"] = ("VALOR get_audio_feature_maps: 10 s windows index-resampled to 480000 samples "
                               "(repeatpad if shorter), HTSAT feat_maps (64, 768) = 2 freq x 32 time tokens, "
                               "bicubic to 1024 frames, freq mean, adaptive_avg_pool1d to 10 s -> (S, 768)")
    prov: dict[str, Any] = {
        "recipe": recipe, "audio": {**meta, "n_samples": int(wave.shape[0])},
        "T": int(next(iter(feats.values())).shape[0]), "weights": dict(wprov), "has_audio": meta["has_audio"],
    }
    return feats, prov
