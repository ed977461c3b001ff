"""VGGish audio features (128-D per 0.96 s example), compatible with torchvggish checkpoints.

Recipe (docs/recipes.md, "VGGish"): the media stage already produced the reference audio chain
(int16 decode, /32768, channel mean, ``resampy`` kaiser_best to 16 kHz) as a float32 16 kHz mono wav.
Here, following Google's ``mel_features.py``/``vggish_input.py`` conventions (re-implemented, not
copied):

- frames of 400 samples (25 ms), hop 160 (10 ms): ``F = 1 + floor((S - 400) / 160)``, tail dropped;
- periodic Hann window ``0.5 - 0.5 cos(2 pi n / 400)``, FFT length 512 (next power of two),
  magnitude ``|rfft|`` (257 bins);
- 64 triangular mel bands between 125 and 7500 Hz on the HTK scale ``1127 ln(1 + f/700)``, band
  edges evenly spaced in mel, weights evaluated at the FFT bin centres ``linspace(0, 8000, 257)``,
  DC bin weight forced to zero (as ``spectrogram_to_mel_matrix`` does);
- ``log(mel + 0.01)``;
- examples of 96 frames x 64 bands; example hop ``round(hop_s * 100)`` frames. The reference uses
  0.96 s (96 frames); the UnAV-100 recipe 0.32 s (32 frames) so that example ``t`` lines up with
  visual step ``t``: ``N = 1 + floor((F - 96) / hop_frames)``, tail dropped.

Time span note: example ``t`` (hop 0.32 s) uses log-mel frames ``[32t, 32t+96)``, i.e. samples
``[5120t, 5120t + 15600)`` = ``[0.32t, 0.32t + 0.975)`` s: the last frame's 25 ms window reaches
15 ms past the nominal 0.96 s span. This is inherent to the reference framing and is kept.

Network: torchvggish's VGG — ``features.{0,3,6,8,11,13}`` 3x3 convs (64, 128, 256, 256, 512, 512)
with ReLU and four 2x2 max-pools, the (B, 512, 6, 4) map permuted to NHWC before flattening (the
TF-Slim order the ported fc weights expect), ``embeddings.{0,2,4}`` = 12288→4096→4096→128, each
followed by ReLU — **the final ReLU is kept**, as in torchvggish and video_features.

PCA post-process: Google's AudioSet release applies PCA (with whitening), clips to [-2, 2] and
quantises to 8 bits. video_features constructs torchvggish's ``Postprocessor`` but its ``forward``
is ``forward(x, post_process=False)`` and the model calls it without the flag, so **the reference
features are the raw 128-D ReLU embeddings** (checked in ``models/vggish/vggish_src/vggish_slim.py``).
Hence ``postprocess=False`` by default; :func:`pca_postprocess` reproduces the AudioSet release
when asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import nn

from extractors.frames import host_to_device
from extractors.io import package_version, sha256_file
from extractors.recipes import Recipe
from extractors.registry import Inputs
from extractors.weight_files import verify
from extractors.weight_loading import load_state_dict, resident_model
from extractors.weight_registry import DEFAULT_ROOT

SAMPLE_RATE = 16000
WIN = 400  # 25 ms
HOP = 160  # 10 ms
NFFT = 512
NUM_BANDS = 64
FMIN, FMAX = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96
FRAMES_PER_S = SAMPLE_RATE / HOP  # 100
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0
WEIGHTS_NAME = "vggish"
PCA_NAME = "vggish_pca_npz"


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, as VGGish uses."""
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_matrix(sr: int = SAMPLE_RATE, n_fft: int = NFFT, n_bands: int = NUM_BANDS,
               fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """(n_fft//2 + 1, n_bands) triangular weights with VGGish's conventions (DC row zeroed)."""
    n_bins = n_fft // 2 + 1
    bins_mel = hz_to_mel(np.linspace(0.0, sr / 2.0, n_bins))
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_bands + 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lo[None, :]) / (mid - lo)[None, :]
    falling = (hi[None, :] - bins_mel[:, None]) / (hi - mid)[None, :]
    w = np.maximum(0.0, np.minimum(rising, falling))
    w[0, :] = 0.0
    return w


def periodic_hann(n: int) -> np.ndarray:
    """``scipy.signal.get_window('hann', n, fftbins=True)`` = ``torch.hann_window(n)``: the STFT window of
    VGGish and of CLAP's front end (``extractors.llp.clap.frontend``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def num_frames(num_samples: int) -> int:
    return max(0, 1 + (num_samples - WIN) // HOP) if num_samples >= WIN else 0


def hop_frames(hop_s: float) -> int:
    h = int(round(hop_s * FRAMES_PER_S))
    if h < 1:
        raise ValueError(f"example hop {hop_s} s is shorter than one 10 ms frame")
    return h


def num_examples(num_samples: int, hop_s: float = 0.96) -> int:
    """``1 + floor((F - 96) / hop)`` with ``F`` log-mel frames; 0 when shorter than one example."""
    f = num_frames(num_samples)
    return 0 if f < EXAMPLE_FRAMES else 1 + (f - EXAMPLE_FRAMES) // hop_frames(hop_s)


def log_mel(wave: np.ndarray, sr: int = SAMPLE_RATE, chunk_frames: int = 8192) -> np.ndarray:
    """(F, 64) float64 log-mel spectrogram, computed in chunks so long audio stays small in memory."""
    if sr != SAMPLE_RATE:
        raise ValueError(f"VGGish log-mel needs {SAMPLE_RATE} Hz audio (the media stage resamples); got {sr}")
    x = np.asarray(wave)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio (S,), got shape {x.shape}")
    n = num_frames(x.shape[0])
    out = np.empty((n, NUM_BANDS), dtype=np.float64)
    if n == 0:
        return out
    window = periodic_hann(WIN)
    mel = mel_matrix(sr)
    frames_all = np.lib.stride_tricks.sliding_window_view(x, WIN)[::HOP][:n]
    for s in range(0, n, chunk_frames):
        frames = frames_all[s:s + chunk_frames].astype(np.float64) * window  # exact upcast, per chunk
        spec = np.abs(np.fft.rfft(frames, n=NFFT, axis=1))
        out[s:s + chunk_frames] = np.log(spec @ mel + LOG_OFFSET)
    return out


def _example_view(lm: np.ndarray, hop_s: float) -> np.ndarray:
    n = 0 if lm.shape[0] < EXAMPLE_FRAMES else 1 + (lm.shape[0] - EXAMPLE_FRAMES) // hop_frames(hop_s)
    if n == 0:
        return np.empty((0, EXAMPLE_FRAMES, NUM_BANDS), dtype=lm.dtype)
    win = np.lib.stride_tricks.sliding_window_view(lm, EXAMPLE_FRAMES, axis=0)  # (F-95, 64, 96)
    return win[:: hop_frames(hop_s)][:n].transpose(0, 2, 1)


def log_mel_examples(wave: np.ndarray, sr: int = SAMPLE_RATE, hop_s: float = 0.96) -> np.ndarray:
    """(N, 96, 64) float32 VGGish input examples; example ``t`` starts at ``t * hop_s`` seconds."""
    return np.ascontiguousarray(_example_view(log_mel(wave, sr), hop_s), dtype=np.float32)


class VGGish(nn.Module):
    """torchvggish-compatible VGG: (B, 1, 96, 64) log-mel → (B, 128) post-ReLU embeddings.

    Its state dict has exactly torchvggish's keys (``features.*``, ``embeddings.*``) so the official
    checkpoint loads with ``strict=True``.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 128), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        h = self.features(x)  # (B, 512, 6, 4) = (B, C, H=time, W=freq)
        h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # NHWC flatten, as the TF-ported weights expect
        return self.embeddings(h)


def load_pca(source: str | Path = PCA_NAME, weights_root: Path | str = DEFAULT_ROOT
             ) -> tuple[np.ndarray, np.ndarray]:
    """(means (128,), eigen_vectors (128, 128)) from an npz path or a registry name."""
    p = Path(source)
    if p.suffix == ".npz" and p.is_file():
        with np.load(p, allow_pickle=False) as z:
            return np.asarray(z["pca_means"], np.float64).reshape(-1), np.asarray(z["pca_eigen_vectors"], np.float64)
    sd = load_state_dict(str(source), weights_root)
    return (sd["pca_means"].double().numpy().reshape(-1), sd["pca_eigen_vectors"].double().numpy())


def pca_postprocess(emb: np.ndarray, means: np.ndarray, eigen_vectors: np.ndarray) -> np.ndarray:
    """AudioSet release post-process: ``E (x - mu)``, clip to [-2, 2], quantise to 0..255 (uint8)."""
    x = np.asarray(emb, dtype=np.float64)
    pca = (x - means.reshape(1, -1)) @ eigen_vectors.T
    clipped = np.clip(pca, QUANTIZE_MIN, QUANTIZE_MAX)
    q = np.round((clipped - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN)))
    return q.astype(np.uint8)


def read_wav_16k_mono(path: Path | str) -> np.ndarray:
    """Read the media stage's float32 16 kHz mono wav (no re-quantisation)."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=False)
    if sr != SAMPLE_RATE:
        raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz (media stage output), got {sr} Hz")
    if x.ndim != 1:
        raise ValueError(f"{path}: expected mono, got {x.shape[1]} channels")
    return x


def _batches(examples: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for s in range(0, examples.shape[0], batch_size):
        yield np.ascontiguousarray(examples[s:s + batch_size], dtype=np.float32)


@torch.no_grad()
def embed_examples(model: VGGish, examples: np.ndarray, device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """(N, 96, 64) → (N, 128) float32, in batches."""
    out = np.empty((examples.shape[0], 128), dtype=np.float32)
    i = 0
    for b in _batches(examples, batch_size):
        out[i:i + b.shape[0]] = model(host_to_device(b, device)).float().cpu().numpy()
        i += b.shape[0]
    return out


def build_vggish(recipe: Recipe, weights_root: Path = DEFAULT_ROOT, device: str = "cpu"
                 ) -> tuple[VGGish, dict[str, Any]]:
    """VGGish with the recipe's weights (registry checkpoint, or explicitly random and seeded; random uses
    He init so the embeddings keep the log-mel's scale, see ``extractors.weight_loading.reinit_``)."""
    return resident_model(("vggish", recipe.seed), VGGish, WEIGHTS_NAME, recipe.weights, weights_root, recipe.seed,
                          device, random_init="he")


def extract_vggish(
    wav_path: Path,
    recipe: Recipe,
    weights_root: Path = DEFAULT_ROOT,
    device: str = "cpu",
    batch_size: int = 64,
    postprocess: bool = False,
    pca_source: str | Path = PCA_NAME,
) -> tuple[np.ndarray, dict[str, Any]]:
    """VGGish features of one wav: ``(T, 128)`` float32 (uint8 values as float32 if ``postprocess``).

    Example ``t`` covers ``[t * recipe.audio_hop_s, t * recipe.audio_hop_s + 0.96)`` s. Weights per
    ``recipe.weights``: the torchvggish checkpoint, or explicitly random (seeded) and labelled so.
    """
    wav_path = Path(wav_path)
    wave = read_wav_16k_mono(wav_path)
    model, prov_w = build_vggish(recipe, weights_root, device)
    lm = log_mel(wave)
    examples = _example_view(lm, recipe.audio_hop_s)
    feats = embed_examples(model, examples, device, batch_size)
    prov: dict[str, Any] = {
        "kind": "vggish",
        "recipe": recipe.to_dict(),
        "recipe_fingerprint": recipe.fingerprint(),
        **prov_w,
        "package_version": package_version(),
        "torch_version": torch.__version__,
        "source": str(wav_path),
        "source_sha256": sha256_file(wav_path),
        "num_samples": int(wave.shape[0]),
        "T": int(feats.shape[0]),
        "seconds_per_step": float(recipe.audio_hop_s),
        "window_s": EXAMPLE_FRAMES / FRAMES_PER_S,
        "postprocess": "pca+quantize" if postprocess else "none (reference: raw ReLU embeddings)",
    }
    if postprocess:
        means, vecs = load_pca(pca_source, weights_root)
        feats = pca_postprocess(feats, means, vecs).astype(np.float32)
        src = Path(pca_source)
        prov["pca_source"] = str(pca_source)
        prov["pca_sha256"] = sha256_file(src) if src.is_file() else verify(str(pca_source), weights_root)
    return feats, prov


def extract(inp: Inputs) -> tuple[np.ndarray, dict[str, Any]]:
    """The extractor table's entry (extractors/registry.py)."""
    return extract_vggish(inp.wav, inp.recipe, weights_root=inp.weights_root, device=inp.device,
                          batch_size=inp.batch_size)
