"""R(2+1)D-34: official ig65m key names/shapes, parity with torchvision's VideoResNet built the ig65m way,
reference transform parity (independent numpy bilinear), streaming windows, end-to-end extraction."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from extractors import r21d as R
from extractors.frames import iter_frames, num_windows
from extractors.recipes import get_recipe
from extractors.weight_loading import build_model_weights
from extractors.weight_registry import WeightsError

FIXTURES = Path(__file__).parent / "fixtures"


def _official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values with exactly the official key names/shapes (BN variances kept positive)."""
    g = torch.Generator().manual_seed(seed)
    keys = json.loads((FIXTURES / "r2plus1d_34_state_dict_keys.json").read_text())["keys"]
    sd: dict[str, torch.Tensor] = {}
    for k, shape in keys:
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(*shape, generator=g) + 0.5
        elif k.endswith(".weight") and len(shape) == 1:  # BN gamma
            sd[k] = torch.rand(*shape, generator=g) + 0.5
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            sd[k] = torch.randn(*shape, generator=g) / np.sqrt(fan_in)
    return sd


def _ig65m_reference() -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("make_weight_fixtures", FIXTURES / "make_weight_fixtures.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ig65m_reference(400)


def test_official_keys_load_strictly_and_match_torchvision_reference() -> None:
    sd = _official_state_dict()
    mine = R.R2Plus1D34(400).eval()
    mine.load_state_dict(sd, strict=True)
    ref = _ig65m_reference().eval()
    ref.load_state_dict(sd, strict=True)
    assert all(m.eps == 1e-3 for m in mine.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert [R.midplanes(128, 128), R.midplanes(256, 256), R.midplanes(512, 512)] == [288, 576, 1152]
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats = mine(x)
        logits_ref = ref(x)
        ref.fc = torch.nn.Identity()
        feats_ref = ref(x)
    assert feats.shape == (2, 512)
    assert torch.allclose(feats, feats_ref, rtol=1e-4, atol=1e-5)
    assert torch.allclose(mine.fc(feats), logits_ref, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ transform
def _bilinear_np(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """align_corners=False bilinear without antialiasing, written out per axis (half-pixel centres)."""
    in_h, in_w = img.shape[:2]

    def coords(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        src = np.maximum(src, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, wy = coords(out_h, in_h)
    x0, x1, wx = coords(out_w, in_w)
    top = img[y0][:, x0] * (1 - wx)[None, :, None] + img[y0][:, x1] * wx[None, :, None]
    bot = img[y1][:, x0] * (1 - wx)[None, :, None] + img[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bot * wy[:, None, None]


def _reference_transform_np(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 → (3, 112, 112) float64 following the video_features r21d steps."""
    x = rgb.astype(np.float64) / 255.0
    x = _bilinear_np(x, 128, 171)
    x = (x - np.array([0.43216, 0.394666, 0.37645])) / np.array([0.22803, 0.22145, 0.216989])
    i, j = int(round((128 - 112) / 2)), int(round((171 - 112) / 2))
    return x[i:i + 112, j:j + 112].transpose(2, 0, 1)


def _first_frames(path: Path, n: int) -> list[np.ndarray]:
    return [f for _, f in zip(range(n), iter_frames(path, None, skip_failed_first=False), strict=False)]


def test_transform_matches_independent_numpy_on_clip_frames(odd_rate_clip: Path) -> None:
    frames = _first_frames(odd_rate_clip, 2)  # 320x240 H.264, detailed test pattern
    assert frames[0].shape == (240, 320, 3)
    out = R.transform_frames(np.stack(frames))
    assert out.shape == (3, 2, 112, 112) and out.dtype == torch.float32
    for t, f in enumerate(frames):
        ref = _reference_transform_np(f)
        # float32 precision only: torch computes the bilinear source positions in float32, and at the test
        # pattern's one-pixel 0->255 edges (4.4 normalised units) that rounding reaches ~4e-5; every
        # algorithmic difference (align_corners, antialias, crop offsets) is > 1e-2 (see below)
        assert np.abs(out[:, t].numpy() - ref).max() < 1e-4
    assert R.center_crop_offsets(128, 171) == (8, 30)
    # antialiasing would change a downscale from 240x320: the reference has none
    aa = torch.nn.functional.interpolate(torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255,
                                         size=(128, 171), mode="bilinear", antialias=True)[0]
    plain = _bilinear_np(frames[0].astype(np.float64) / 255, 128, 171).transpose(2, 0, 1)
    assert np.abs(aa.numpy() - plain).max() > 1e-2


# ------------------------------------------------------------------ windows
def _decode_index(win: torch.Tensor) -> list[int]:
    """Frame k is a constant image of value k; invert the normalisation to recover k per time step."""
    mean = torch.tensor(R.KINETICS_MEAN)[:, None]
    std = torch.tensor(R.KINETICS_STD)[:, None]
    vals = win.mean(dim=(2, 3)) * std + mean  # (3, T) in [0, 1]
    return [int(round(v)) for v in (vals[0] * 255).tolist()]


@pytest.mark.parametrize("n,stack,step", [(40, 16, 16), (40, 16, 8), (37, 5, 7), (10, 4, 1), (3, 4, 2), (4, 4, 4)])
def test_windows_count_content_and_streaming(n: int, stack: int, step: int) -> None:
    pulled = [0]
    pulled_at_yield: list[int] = []

    def frames() -> Iterator[np.ndarray]:
        for k in range(n):
            pulled[0] += 1
            yield np.full((6, 8, 3), k, dtype=np.uint8)

    wins = []
    for batch in R.clip_batches(frames(), stack, step, batch_size=1):
        pulled_at_yield.append(pulled[0])
        wins.append(_decode_index(batch[0]))
    expected = (n - stack) // step + 1 if n >= stack else 0
    assert len(wins) == expected == num_windows(n, stack, step)
    for t, idx in enumerate(wins):
        assert idx == list(range(t * step, t * step + stack))
        # streamed: window t is produced as soon as its last frame is decoded, never later
        assert pulled_at_yield[t] == t * step + stack


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("r21d") / "tiny clip ü.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-f", "lavfi", "-i",
           "testsrc2=size=160x120:rate=16", "-frames:v", "10", "-pix_fmt", "yuv420p", "-c:v", "libx264", str(out)]
    subprocess.run(cmd, check=True)
    return out


def test_extract_r21d_end_to_end(tiny_video: Path, tmp_path: Path) -> None:
    recipe = get_recipe("activitynet", weights="random", seed=0, stack=2, step=3)
    feats, prov = R.extract_r21d(tiny_video, recipe, weights_root=tmp_path, batch_size=2)
    frames = list(iter_frames(tiny_video, None, skip_failed_first=False))
    assert len(frames) == 10 == prov["num_frames"]
    assert feats.shape == (num_windows(10, 2, 3), 512) == (3, 512) and feats.dtype == np.float32
    assert prov["weights"] == "random" and prov["seed"] == 0 and prov["T"] == 3
    assert prov["seconds_per_step"] == 3 / 16
    assert np.abs(feats).max() > 0 and np.abs(feats[0] - feats[1]).max() > 0  # non-degenerate features
    # independent path: numpy transform, explicit slicing, one window per forward pass
    model = R.R2Plus1D34(400)
    build_model_weights(model, R.DEFAULT_WEIGHTS, "random", seed=0)
    model.eval()
    with torch.no_grad():
        for t in range(3):  # window t = frames [3t, 3t + 2)
            clip = np.stack([_reference_transform_np(f) for f in frames[3 * t: 3 * t + 2]], axis=1)
            ref = model(torch.from_numpy(clip).float()[None])[0].numpy()
            scale = np.abs(ref).max()
            assert np.abs(feats[t] - ref).max() <= 1e-4 * max(scale, 1e-3)


def test_extract_r21d_pretrained_missing_weights_fails_loudly(tiny_video: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth"):
        R.extract_r21d(tiny_video, get_recipe("activitynet"), weights_root=tmp_path)


def test_unreadable_video_raises(tmp_path: Path) -> None:
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(OSError):
        list(iter_frames(bad, None, skip_failed_first=False))
