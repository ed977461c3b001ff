"""VGGish: torchvggish key/shape compatibility, log-mel parity with an independent DFT implementation,
PCA post-process, example counts, time alignment, batch-size independence and labelled random weights."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ODD_RATE_CLIP
from torch import nn

from extractors import vggish as V
from extractors.recipes import get_recipe
from extractors.weight_loading import build_model_weights
from extractors.weight_registry import WeightsError

FIXTURES = Path(__file__).parent / "fixtures"
PCA_NPZ = Path(__file__).parent / "data" / "vggish_pca_params.npz"  # Google's public params, tests/data/README.md


def _fixture_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    keys = json.loads((FIXTURES / name).read_text())["keys"]
    return {k: torch.randn(*shape, generator=g) * 0.05 for k, shape in keys}


@pytest.fixture(scope="module")
def clip_audio(odd_rate_clip: Path) -> np.ndarray:
    """The 44.1 kHz AAC clip's audio as 16 kHz mono float32 (any decode path will do: only parity matters)."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(odd_rate_clip), "-vn", "-ac", "1",
           "-ar", "16000", "-f", "f32le", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    x = np.frombuffer(raw, dtype=np.float32)
    duration_s = ODD_RATE_CLIP[3]
    assert x.shape[0] > 16000 * (duration_s - 1)  # the whole track, not a stub
    return x


@pytest.fixture(scope="module")
def random_model() -> V.VGGish:
    m = V.VGGish()
    build_model_weights(m, "vggish", "random", seed=0)
    return m.eval()


# ------------------------------------------------------------------ network
class TorchvggishLayout(nn.Module):
    """The reference forward written as torchvggish does it (two transposes before the flatten)."""

    def __init__(self) -> None:
        super().__init__()
        cfg, layers, c = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M"], [], 1
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(12288, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                                        nn.Linear(4096, 128), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.transpose(x, 1, 3)
        x = torch.transpose(x, 1, 2).contiguous()
        return self.embeddings(x.view(x.size(0), -1))


def test_loads_official_keys_strictly_and_flattens_like_torchvggish() -> None:
    sd = _fixture_state_dict("vggish_state_dict_keys.json")
    mine, ref = V.VGGish().eval(), TorchvggishLayout().eval()
    mine.load_state_dict(sd, strict=True)
    ref.load_state_dict(sd, strict=True)
    x = torch.randn(3, 1, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = mine(x), ref(x)
    assert a.shape == (3, 128)
    assert (a >= 0).all()  # final ReLU kept
    assert torch.allclose(a, b, atol=1e-6, rtol=0)
    # an NCHW flatten (the wrong order) would not reproduce the reference
    with torch.no_grad():
        wrong = mine.embeddings(mine.features(x).flatten(1))
    assert not torch.allclose(wrong, b, atol=1e-4)


# ------------------------------------------------------------------ log-mel
def _independent_log_mel(x: np.ndarray) -> np.ndarray:
    """Plain re-derivation: explicit DFT matrix (no FFT), mel weights by loops from the HTK formula."""
    sr, win, hop, nfft, bands = 16000, 400, 160, 512, 64
    n_frames = 1 + (len(x) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / win) for n in range(win)])
    frames = x.astype(np.float64)[idx] * window
    k = np.arange(nfft // 2 + 1)
    n = np.arange(win)
    ang = 2 * np.pi * np.outer(n, k) / nfft  # zero padding to 512: samples >= 400 contribute nothing
    mag = np.sqrt((frames @ np.cos(ang)) ** 2 + (frames @ np.sin(ang)) ** 2)

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo_m, hi_m = mel(125.0), mel(7500.0)
    edges = [lo_m + (hi_m - lo_m) * i / (bands + 1) for i in range(bands + 2)]
    weights = np.zeros((nfft // 2 + 1, bands))
    for b in range(bands):
        left, centre, right = edges[b], edges[b + 1], edges[b + 2]
        for j in range(1, nfft // 2 + 1):  # j = 0 (DC) stays zero
            m = mel(j * (sr / 2) / (nfft // 2))
            if left < m <= centre:
                weights[j, b] = (m - left) / (centre - left)
            elif centre < m < right:
                weights[j, b] = (right - m) / (right - centre)
    return np.log(mag @ weights + 0.01)


def test_log_mel_matches_independent_dft_on_clip_audio(clip_audio: np.ndarray) -> None:
    ref = _independent_log_mel(clip_audio)
    lm = V.log_mel(clip_audio)
    assert lm.shape == ref.shape == (1 + (len(clip_audio) - 400) // 160, 64)
    assert np.abs(lm - ref).max() < 1e-5
    ex = V.log_mel_examples(clip_audio, hop_s=0.32)
    assert ex.dtype == np.float32
    for t in (0, 1, ex.shape[0] - 1):
        assert np.abs(ex[t] - ref[32 * t: 32 * t + 96]).max() < 1e-5
    ex96 = V.log_mel_examples(clip_audio, hop_s=0.96)
    assert np.abs(ex96[2] - ref[192:288]).max() < 1e-5
    assert np.ptp(ref) > 5  # structured audio, not a constant


def test_log_mel_rejects_wrong_rate_and_stereo() -> None:
    with pytest.raises(ValueError, match="16000"):
        V.log_mel(np.zeros(44100), sr=44100)
    with pytest.raises(ValueError, match="mono"):
        V.log_mel(np.zeros((16000, 2)))


@pytest.mark.parametrize("hop_s,hop_frames", [(0.96, 96), (0.32, 32)])
def test_example_counts(hop_s: float, hop_frames: int) -> None:
    for s in [0, 399, 400, 15599, 15600, 15600 + 160 * hop_frames - 1, 15600 + 160 * hop_frames,
              16000 * 10, 16000 * 10 + 77, 123457]:
        f = 1 + (s - 400) // 160 if s >= 400 else 0
        expected = 1 + (f - 96) // hop_frames if f >= 96 else 0
        assert V.num_examples(s, hop_s) == expected, s
        assert V.log_mel_examples(np.zeros(s, dtype=np.float32), hop_s=hop_s).shape == (expected, 96, 64)
    assert V.num_examples(16000 * 10, 0.96) == 10 and V.num_examples(16000 * 10, 0.32) == 29


# ------------------------------------------------------------------ PCA
def test_pca_postprocess_with_real_params_equals_hand_computation() -> None:
    means, vecs = V.load_pca(PCA_NPZ)
    assert means.shape == (128,) and vecs.shape == (128, 128)
    rng = np.random.default_rng(0)
    emb = np.maximum(rng.normal(0.2, 0.4, size=(3, 128)), 0).astype(np.float32)
    out = V.pca_postprocess(emb, means, vecs)
    assert out.dtype == np.uint8 and out.shape == (3, 128)
    for i in range(3):
        for r in range(0, 128, 7):
            acc = 0.0
            for c in range(128):
                acc += float(vecs[r, c]) * (float(emb[i, c]) - float(means[c]))
            acc = min(2.0, max(-2.0, acc))
            assert out[i, r] == round((acc + 2.0) * 255.0 / 4.0)
    # the clip and the quantisation both matter on these values
    assert (out == 0).any() or (out == 255).any()
    assert len(np.unique(out)) > 50


# ------------------------------------------------------------------ time alignment
def test_tone_changes_exactly_the_examples_that_contain_it(random_model: V.VGGish) -> None:
    sr, hop_s = 16000, 0.32
    s0, s1 = 33000, 40000  # tone on [2.0625 s, 2.5 s)
    x = np.zeros(6 * sr, dtype=np.float32)
    t_ax = np.arange(s1 - s0) / sr
    x[s0:s1] = 0.5 * np.sin(2 * np.pi * 1000.0 * t_ax)
    ex = V.log_mel_examples(x, hop_s=hop_s)
    emb = V.embed_examples(random_model, ex, batch_size=64)
    silent = V.embed_examples(random_model, V.log_mel_examples(np.zeros(6 * sr, np.float32), hop_s=hop_s))
    diff = np.abs(emb - silent).max(axis=1)
    nominal = {t for t in range(len(ex)) if t * hop_s < s1 / sr and t * hop_s + 0.96 > s0 / sr}
    assert nominal == {4, 5, 6, 7}
    changed = {t for t in range(len(ex)) if diff[t] > 1e-3 * np.abs(silent).max()}
    assert changed == nominal
    unchanged = sorted(set(range(len(ex))) - nominal)
    assert diff[unchanged].max() <= 1e-6


# ------------------------------------------------------------------ extraction entry point
def _write_wav(path: Path, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * (t > 1.5) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    sf.write(str(path), x, 16000, subtype="FLOAT")
    return x


def test_extract_batch_size_independent_deterministic_and_labelled(tmp_path: Path) -> None:
    wav = tmp_path / "a clip with spaces.wav"
    x = _write_wav(wav, 5.5)
    recipe = get_recipe("unav100", weights="random", seed=3)
    f1, p1 = V.extract_vggish(wav, recipe, weights_root=tmp_path / "none", batch_size=1)
    f2, p2 = V.extract_vggish(wav, recipe, weights_root=tmp_path / "none", batch_size=64)
    f3, _ = V.extract_vggish(wav, recipe, weights_root=tmp_path / "none", batch_size=64)
    assert f1.shape == (V.num_examples(len(x), 0.32), 128) == (15, 128) and f1.dtype == np.float32
    assert np.abs(f1 - f2).max() <= 1e-5
    assert np.array_equal(f2, f3)
    assert p1["weights"] == "random" and p1["seed"] == 3
    assert p1["T"] == 15 and p1["seconds_per_step"] == 0.32 and p1["source_sha256"] == p2["source_sha256"]
    other, _ = V.extract_vggish(wav, recipe.replace(seed=4), weights_root=tmp_path / "none")
    assert np.abs(other - f2).max() > 1e-4


def test_extract_pretrained_without_weights_fails_loudly(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    _write_wav(wav, 1.2)
    with pytest.raises(WeightsError, match="vggish-10086976.pth"):
        V.extract_vggish(wav, get_recipe("unav100"), weights_root=tmp_path)


def test_extract_with_pca_postprocess_and_wrong_rate(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    _write_wav(wav, 2.5)
    recipe = get_recipe("unav100", weights="random", seed=0)
    raw, _ = V.extract_vggish(wav, recipe, weights_root=tmp_path)
    q, prov = V.extract_vggish(wav, recipe, weights_root=tmp_path, postprocess=True, pca_source=PCA_NPZ)
    means, vecs = V.load_pca(PCA_NPZ)
    assert np.array_equal(q, V.pca_postprocess(raw, means, vecs).astype(np.float32))
    assert prov["pca_sha256"].startswith("4d878af3")
    bad = tmp_path / "b.wav"
    sf.write(str(bad), np.zeros(22050, np.float32), 22050, subtype="FLOAT")
    with pytest.raises(ValueError, match="16000"):
        V.extract_vggish(bad, recipe, weights_root=tmp_path)
