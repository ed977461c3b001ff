"""RAFT-large optical flow for the I3D flow stream, through ONE module (torchvision's implementation).

Reference (v-iashin/video_features ``models/raft/raft_src/raft.py`` @02fae36, ``corr.py``, ``update.py``,
``extractor.py``, ``utils/utils.py``; a copy of princeton-vl/RAFT@25eb2ac
with ``iters=20, test_mode=True`` defaults and ``forward`` returning only the final ``flow_up``):

- input frames 0..255 float, scaled inside the network by ``2 * (x / 255) - 1``;
- ``InputPadder(dims, mode='sintel')``: ``pad = ((H // 8) + 1) * 8 - H) % 8`` per axis, split
  ``[p // 2, p - p // 2]`` (the extra pixel goes to the bottom / right), ``F.pad(..., mode='replicate')``.
  ``extract_i3d.py`` pads the 256-short-side frames and never calls ``unpad``: the flow that reaches the
  224 centre crop is the padded ``(Hp, Wp)`` field, so the crop offsets are ``(Hp-224)//2, (Wp-224)//2``
  in *padded* coordinates. For 256x341 frames: pad W by 3 (1 left, 2 right) → 344; crop columns
  ``[60, 284)`` of the padded field = columns ``[59, 283)`` of the frame (rows ``[16, 240)``).
  The RGB stream crops the unpadded frame, columns ``[58, 282)``: the two streams' crops are one pixel
  apart, a reference quirk we keep.
- 20 GRU updates, convex 8x upsampling of the final ``coords1 - coords0``; channels (dx, dy).

Architecture equivalence (both sources read): torchvision ``models/optical_flow/raft.py`` ``raft_large`` is
layer-for-layer the original ``RAFT`` (BasicEncoder 64/64/96/128 → 256 with InstanceNorm2d(affine=False)
for fnet and BatchNorm2d for cnet; all-pairs correlation ``/ sqrt(C)`` with a 4-level ``avg_pool2d`` pyramid;
lookup radius 4 with ``delta = stack(meshgrid(linspace, linspace, 'ij'))`` added to (x, y) centroids in
both — the original's ``meshgrid(dy, dx)`` over identical ranges gives the same tensor; grid_sample
``align_corners=True`` with ``2x/(W-1)-1`` normalisation; BasicMotionEncoder 256/192 + 128/64 → 126 + flow;
SepConvGRU (1x5 then 5x1); FlowHead 256; mask head ``0.25 * conv1x1(relu(conv3x3))`` with softmax over 9
and ``unfold(8 * flow)``). The only differences are (a) torchvision expects inputs already in [-1, 1]
(we apply ``2x/255-1`` before it), (b) torchvision upsamples the flow after every update (we run the
update loop with its own sub-modules and upsample once at the end: the final output is the same
computation), (c) key names, handled by :func:`convert_original_raft`. ``tests/test_raft.py`` checks the
equivalence numerically against an independent functional re-implementation of the original forward
that reads the original-format state dict.

``farneback`` (OpenCV ``calcOpticalFlowFarneback`` on grey frames, same padding) serves the offline demo
recipe; it is NOT the reference flow.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.optical_flow import raft_large
from torchvision.models.optical_flow._utils import make_coords_grid, upsample_flow

from extractors.frames import host_to_device

# ----------------------------------------------------------------------------- padding


def sintel_pad_amounts(height: int, width: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` replicate padding of RAFT's InputPadder in 'sintel' mode."""
    pad_h = (((height // 8) + 1) * 8 - height) % 8
    pad_w = (((width // 8) + 1) * 8 - width) % 8
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


def pad_sintel(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad ``(..., H, W)`` to multiples of 8, split evenly (extra pixel bottom/right)."""
    pads = sintel_pad_amounts(x.shape[-2], x.shape[-1])
    if not any(pads):
        return x
    return F.pad(x, pads, mode="replicate")


def padded_size(height: int, width: int) -> tuple[int, int]:
    left, right, top, bottom = sintel_pad_amounts(height, width)
    return height + top + bottom, width + left + right


# ----------------------------------------------------------------------------- weights conversion

_ENC = {"fnet": "feature_encoder", "cnet": "context_encoder"}
_GRU = {"z": "convz", "r": "convr", "q": "convq"}
_MOTION = {"convc1": "convcorr1.0", "convc2": "convcorr2.0", "convf1": "convflow1.0",
           "convf2": "convflow2.0", "conv": "conv.0"}


def _convert_key(key: str) -> str | None:
    """Map one original RAFT key to torchvision's name (``None`` = drop: an alias of another key)."""
    m = re.fullmatch(r"(fnet|cnet)\.(.+)", key)
    if m:
        enc, rest = _ENC[m.group(1)], m.group(2)
        if rest.startswith("conv1."):
            return f"{enc}.convnormrelu.0.{rest[6:]}"
        if rest.startswith("norm1."):
            return f"{enc}.convnormrelu.1.{rest[6:]}"
        if rest.startswith("conv2."):
            return f"{enc}.conv.{rest[6:]}"
        mb = re.fullmatch(r"(layer\d\.\d)\.(conv1|conv2|norm1|norm2|norm3|downsample\.[01])\.(.+)", rest)
        if mb:
            block, part, tail = mb.groups()
            if part == "norm3":  # the same module object as downsample.1 in the original: duplicated keys
                return None
            part = {"conv1": "convnormrelu1.0", "norm1": "convnormrelu1.1", "conv2": "convnormrelu2.0",
                    "norm2": "convnormrelu2.1"}.get(part, part)
            return f"{enc}.{block}.{part}.{tail}"
        raise KeyError(f"unexpected RAFT encoder key {key!r}")
    m = re.fullmatch(r"update_block\.encoder\.(\w+)\.(weight|bias)", key)
    if m and m.group(1) in _MOTION:
        return f"update_block.motion_encoder.{_MOTION[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"update_block\.gru\.conv([zrq])([12])\.(weight|bias)", key)
    if m:
        return f"update_block.recurrent_block.convgru{m.group(2)}.{_GRU[m.group(1)]}.{m.group(3)}"
    m = re.fullmatch(r"update_block\.flow_head\.(conv[12])\.(weight|bias)", key)
    if m:
        return key
    m = re.fullmatch(r"update_block\.mask\.([02])\.(weight|bias)", key)
    if m:
        return f"mask_predictor.{'convrelu.0' if m.group(1) == '0' else 'conv'}.{m.group(2)}"
    raise KeyError(f"unexpected RAFT key {key!r} (is this an original princeton-vl/RAFT raft-large checkpoint?)")


def convert_original_raft(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original princeton-vl/RAFT ``raft-*.pth`` state dict (saved from ``DataParallel``, so
    keys may start with ``module.``) to torchvision ``raft_large`` names.

    ``cnet.layerX.0.norm3.*`` are dropped after checking they equal ``downsample.1.*`` (one module
    registered twice in the original).
    """
    out: dict[str, torch.Tensor] = {}
    src = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    for key, value in src.items():
        new = _convert_key(key)
        if new is None:
            alias = key.replace("norm3.", "downsample.1.")
            if alias in src and not torch.equal(src[alias], value):
                raise ValueError(f"RAFT checkpoint: {key} differs from its alias {alias}")
            continue
        out[new] = value
    return out


# ----------------------------------------------------------------------------- the network


class RAFTFlow(nn.Module):
    """RAFT-large (torchvision modules) with the reference's input handling.

    ``forward(frames1, frames2)`` takes float ``(B, 3, H, W)`` frames in 0..255 (unpadded), applies the
    sintel replicate padding and ``2x/255-1``, runs ``iters`` updates and returns the final upsampled
    flow ``(B, 2, Hp, Wp)`` of the *padded* size (not un-padded, as the reference).
    """

    def __init__(self, iters: int = 20) -> None:
        super().__init__()
        self.net = raft_large(weights=None, progress=False)
        self.iters = iters

    def forward(self, frames1: torch.Tensor, frames2: torch.Tensor, iters: int | None = None) -> torch.Tensor:
        iters = self.iters if iters is None else iters
        image1 = 2 * (pad_sintel(frames1) / 255.0) - 1.0
        image2 = 2 * (pad_sintel(frames2) / 255.0) - 1.0
        return self.flow_normalized(image1.contiguous(), image2.contiguous(), iters)

    def flow_normalized(self, image1: torch.Tensor, image2: torch.Tensor, iters: int) -> torch.Tensor:
        """RAFT on already padded, [-1, 1] images; final convex-upsampled flow only."""
        net = self.net
        b, _, h, w = image1.shape
        fmaps = net.feature_encoder(torch.cat([image1, image2], dim=0))
        fmap1, fmap2 = torch.chunk(fmaps.float(), chunks=2, dim=0)
        net.corr_block.build_pyramid(fmap1, fmap2)
        context_out = net.context_encoder(image1)
        hsize = net.update_block.hidden_state_size
        hidden, context = torch.split(context_out, [hsize, context_out.shape[1] - hsize], dim=1)
        hidden, context = torch.tanh(hidden), F.relu(context)
        coords0 = make_coords_grid(b, h // 8, w // 8).to(fmap1.device)
        coords1 = coords0.clone()
        for _ in range(iters):
            corr = net.corr_block.index_pyramid(centroids_coords=coords1)
            hidden, delta = net.update_block(hidden, context, corr, coords1 - coords0)
            coords1 = coords1 + delta.float()
        mask = net.mask_predictor(hidden)
        out = upsample_flow(flow=(coords1 - coords0), up_mask=mask.float())
        net.corr_block.corr_pyramid = [torch.tensor(0)]  # free the correlation volume
        return out


def build_raft(recipe: Any, weights_root: Path = Path("resources/weights"),
               device: str | torch.device = "cpu") -> tuple[RAFTFlow, dict[str, Any]]:
    """RAFT with the recipe's weights (``recipe.raft_weights``; ``recipe.weights == 'random'`` → seeded
    random init, recorded in the provenance). Weights go through the registry in ``extractors.weight_registry``."""
    from extractors.weight_loading import resident_model

    return resident_model(("raft", recipe.raft_weights, recipe.raft_iters, recipe.seed),
                          lambda: RAFTFlow(iters=recipe.raft_iters), recipe.raft_weights, recipe.weights, weights_root,
                          recipe.seed, device, weights_of=lambda model: model.net)


# ----------------------------------------------------------------------------- flow over a video


@torch.no_grad()
def raft_pairs(model: RAFTFlow, frames: np.ndarray, device: str | torch.device, batch_size: int,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Flow ``(N-1, 2, Hp, Wp)`` float32 (on ``device``) between consecutive uint8 frames ``(N, H, W, 3)``,
    ``batch_size`` pairs per forward. ``dtype=torch.bfloat16`` runs the encoders/updates under autocast
    (an approximate mode; the exact recipe is float32)."""
    x = host_to_device(frames, device).permute(0, 3, 1, 2).float()
    outs = []
    dev_type = torch.device(device).type
    for i in range(0, x.shape[0] - 1, batch_size):
        j = min(i + batch_size, x.shape[0] - 1)
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            outs.append(model(x[i:j], x[i + 1:j + 1]).float())
    return torch.cat(outs) if outs else x.new_zeros((0, 2, *padded_size(x.shape[2], x.shape[3])))


def farneback_pairs(frames: np.ndarray) -> torch.Tensor:
    """OpenCV Farneback flow ``(N-1, 2, Hp, Wp)`` (dx, dy) between consecutive uint8 RGB frames, on the
    same sintel-padded geometry as RAFT so the I3D crop is the same region (demo recipe only)."""
    n, h, w, _ = frames.shape
    left, right, top, bottom = sintel_pad_amounts(h, w)
    grey = [cv2.copyMakeBorder(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), top, bottom, left, right,
                               cv2.BORDER_REPLICATE) for f in frames]
    flows = [cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0).transpose(2, 0, 1)
             for a, b in zip(grey[:-1], grey[1:], strict=True)]
    hp, wp = h + top + bottom, w + left + right
    return torch.from_numpy(np.stack(flows)) if flows else torch.zeros((0, 2, hp, wp))
