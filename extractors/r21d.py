"""R(2+1)D-34 visual features (512-D per window) for the ActivityNet 1.3 recipe.

Network: the R(2+1)D-34 of moabitcoin/ig65m-pytorch (``ig65m/models.py``, checked with the search
tool): torchvision's ``VideoResNet`` with ``R2Plus1dStem`` (3→45 ``(1,7,7)`` stride (1,2,2), then
45→64 ``(3,1,1)``), ``BasicBlock`` x [3, 4, 6, 3] of ``Conv2Plus1D`` (spatial ``(1,3,3)`` conv →
BN → ReLU → temporal ``(3,1,1)`` conv), BatchNorm ``eps=1e-3`` (Caffe2), global average pooling and
``fc`` (400 Kinetics classes for the ``*_ft_kinetics`` checkpoints). Each factorised conv has
``mid = (i * o * 27) // (9 * i + 3 * o)`` channels for its own input ``i`` and output ``o`` — the
Caffe2/VMZ rule. torchvision instead reuses the block's *input* width for ``conv2`` of a
down-sampling block, which is why ig65m patches ``layer{2,3,4}[0].conv2[0]`` to 288/576/1152
mid-planes (VMZ issue 89, vision issue 1265); ``conv1`` of those blocks keeps 230/460/921. The module
here is written from that description and keeps torchvision's state-dict key names
(``stem.0``, ``layer2.0.conv1.0.0``, ``layer2.0.downsample.1``, ``fc``…) so the official checkpoints
load with ``strict=True``.

Frames and transform (the reference is v-iashin/video_features ``models/r21d``): the media stage's
16 FPS mp4 is read in order; per frame ``/255``, bilinear resize to a fixed 128x171
(``F.interpolate(align_corners=False)``, no antialias), normalise with the Kinetics mean/std, center
crop 112 with offsets ``int(round((H-112)/2))``, ``int(round((W-112)/2))`` = (8, 30) (Python's
round-half-to-even, as the reference's ``center_crop``; note the I3D path floors instead). Windows of
``recipe.stack`` frames every ``recipe.step`` frames, incomplete tail dropped:
``T = floor((N - stack) / step) + 1``. Output: the 512-D pooled feature (fc removed).

Differences from the reference, on purpose: (1) the reference decodes the whole video with
``torchvision.io.read_video`` (PyAV) and transforms it at once ("could run out of memory here");
we stream frames with OpenCV (BGR→RGB; the one frame source, ``extractors.frames``) through the one window
builder, each frame transformed once, so memory does not grow with video length. Both decode the same H.264 stream with FFmpeg's decoder; the RGB
conversion of the two libraries may differ by rounding. (2) the reference defaults to
``stack = step = 32`` (or 8) for the ig65m models; docs/recipes.md ("ActivityNet 1.3") fixes 16/16 at 16 FPS for ActivityNet,
which comes from ``recipe.stack``/``recipe.step``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extractors.frames import host_to_device, iter_frames, window_groups
from extractors.io import package_version, sha256_file
from extractors.recipes import Recipe
from extractors.registry import Inputs
from extractors.weight_loading import resident_model
from extractors.weight_registry import DEFAULT_ROOT

RESIZE_HW = (128, 171)
CROP = 112
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
BN_EPS = 1e-3
DEFAULT_WEIGHTS = "r2plus1d_34_32_ig65m_ft_kinetics"


def midplanes(c_in: int, c_out: int) -> int:
    """Caffe2 (2+1)D width: same parameter count as a full 3x3x3 conv from ``c_in`` to ``c_out``."""
    return (c_in * c_out * 27) // (c_in * 9 + 3 * c_out)


def _bn(c: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(c, eps=BN_EPS, momentum=0.9)


class Conv2Plus1D(nn.Sequential):
    """Spatial (1,3,3) conv → BN → ReLU → temporal (3,1,1) conv; indices 0..3 as in torchvision."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        mid = midplanes(c_in, c_out)
        super().__init__(
            nn.Conv3d(c_in, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            _bn(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, c_out, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(Conv2Plus1D(c_in, planes, stride), _bn(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes), _bn(planes))
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != planes:
            self.downsample = nn.Sequential(nn.Conv3d(c_in, planes, 1, stride=stride, bias=False), _bn(planes))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + res)


class R2Plus1D34(nn.Module):
    """R(2+1)D-34 (ig65m-pytorch layout). ``forward`` returns the 512-D pooled features;
    ``classify`` adds the ``fc`` head (kept only so official checkpoints load strictly)."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False), _bn(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False), _bn(64),
            nn.ReLU(inplace=True),
        )
        widths, depths = (64, 128, 256, 512), (3, 4, 6, 3)
        c_in = 64
        for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
            blocks = [BasicBlock(c_in, w, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(w, w) for _ in range(d - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = w
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 112, 112) normalised clips → (B, 512)."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward(x))


def center_crop_offsets(h: int, w: int, size: int = CROP) -> tuple[int, int]:
    """Reference ``center_crop``: ``int(round((h - size) / 2))`` (round half to even)."""
    return int(round((h - size) / 2.0)), int(round((w - size) / 2.0))


def transform_frames(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB → (3, T, 112, 112) float32, exactly the reference transform order:
    /255 → bilinear resize to 128x171 (no antialias) → normalise → center crop 112."""
    x = torch.as_tensor(rgb)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    x = x.permute(3, 0, 1, 2).to(torch.float32) / 255.0  # (C, T, H, W)
    x = F.interpolate(x, size=RESIZE_HW, mode="bilinear", align_corners=False)
    mean = torch.tensor(KINETICS_MEAN).view(-1, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(-1, 1, 1, 1)
    x = (x - mean) / std
    i, j = center_crop_offsets(*RESIZE_HW)
    return x[..., i:i + CROP, j:j + CROP].contiguous()


def clip_batches(frames: Iterable[np.ndarray], stack: int, step: int,
                 batch_size: int) -> Iterator[torch.Tensor]:
    """``(B, 3, stack, 112, 112)`` batches of up to ``batch_size`` windows starting at frames 0, step, 2*step, …
    (:func:`extractors.frames.window_groups` with ``span = stack``): each frame is transformed once, frames
    between windows are never transformed, and a window is complete as soon as its last frame is decoded."""
    if stack < 1 or step < 1:
        raise ValueError(f"stack and step must be >= 1, got {stack}, {step}")
    for ts, base, buf in window_groups(frames, stack, step, batch_size,
                                       prepare=lambda rgb: transform_frames(rgb)[:, 0]):
        yield torch.stack([torch.stack(buf[t * step - base: t * step - base + stack], dim=1) for t in ts])


@torch.no_grad()
def features_from_frames(model: R2Plus1D34, frames: Iterable[np.ndarray], stack: int, step: int,
                         device: str = "cpu", batch_size: int = 8) -> tuple[np.ndarray, int]:
    """(T, 512) features from a frame iterator; also returns the number of frames consumed."""
    counted = [0]

    def counting() -> Iterator[np.ndarray]:
        for f in frames:
            counted[0] += 1
            yield f

    feats = [model(host_to_device(batch, device)).float().cpu().numpy()
             for batch in clip_batches(counting(), stack, step, batch_size)]
    out = np.concatenate(feats, axis=0) if feats else np.zeros((0, 512), dtype=np.float32)
    return out.astype(np.float32, copy=False), counted[0]


def build_r21d(recipe: Recipe, weights_root: Path = DEFAULT_ROOT, device: str = "cpu",
               weights_name: str = DEFAULT_WEIGHTS) -> tuple[R2Plus1D34, dict[str, Any]]:
    """R(2+1)D-34 with the recipe's weights (ig65m checkpoint, or explicitly random and seeded)."""
    return resident_model(("r21d", weights_name, recipe.seed), lambda: R2Plus1D34(num_classes=400), weights_name,
                          recipe.weights, weights_root, recipe.seed, device)


def extract_r21d(
    mp4_path: Path,
    recipe: Recipe,
    weights_root: Path = DEFAULT_ROOT,
    device: str = "cpu",
    batch_size: int = 8,
    weights_name: str = DEFAULT_WEIGHTS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """R(2+1)D-34 features of one constant-frame-rate mp4: ``(T, 512)`` float32 and provenance.

    Window ``t`` covers frames ``[t*step, t*step + stack)``. Weights per ``recipe.weights``
    (``weights_name`` picks the 32- or 8-frame ig65m checkpoint; both have 400 classes).
    """
    mp4_path = Path(mp4_path)
    model, prov_w = build_r21d(recipe, weights_root, device, weights_name)
    frames = iter_frames(mp4_path, short_side=None, skip_failed_first=False)  # video_features' r21d reads with PyAV
    feats, n_frames = features_from_frames(model, frames, recipe.stack, recipe.step, device, batch_size)
    prov = {
        "kind": "r21d",
        "recipe": recipe.to_dict(),
        "recipe_fingerprint": recipe.fingerprint(),
        **prov_w,
        "package_version": package_version(),
        "torch_version": torch.__version__,
        "source": str(mp4_path),
        "source_sha256": sha256_file(mp4_path),
        "num_frames": int(n_frames),
        "T": int(feats.shape[0]),
        "seconds_per_step": float(recipe.step_s),
        "window_s": float(recipe.window_s),
        "transform": "/255, bilinear 128x171 (no antialias), kinetics mean/std, center crop 112 (8, 30)",
        "decoder": "opencv",
    }
    return feats, prov


def extract(inp: Inputs) -> tuple[np.ndarray, dict[str, Any]]:
    """The extractor table's entry (extractors/registry.py)."""
    return extract_r21d(inp.mp4, inp.recipe, weights_root=inp.weights_root, device=inp.device,
                        batch_size=inp.batch_size)
