"""HTSAT, CLAP's audio tower: a Swin transformer on the log-mel image (laion_clap ``clap_module/htsat.py``).

Inputs longer than 10 s (laion_clap ``training/data.py:get_audio_features`` with ``data_truncating='fusion'``,
as ``hook.py:get_audio_embedding_from_data`` calls it; :meth:`HTSAT.prepare`): a fusion checkpoint gets
``mel_fusion`` = [whole mel shrunk to 1001 frames, three random 1001-frame crops, one from each third] and
``longer=True``, and its patch embedding fuses the crops into the global patches (``aff_2d``: ``mel_conv2d`` +
:class:`AFF`, laion_clap ``htsat.py:PatchEmbed``); a non-fusion checkpoint reads a random 10 s crop of the
waveform. The random draws come from a caller-seeded ``numpy`` generator (laion_clap uses numpy's global state).
For clips <= 10 s the fusion model's local branch is never used (``longer`` is False), as in VALOR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extractors.llp.clap.frontend import (
    CLIP_SAMPLES,
    SAMPLE_RATE,
    _Spectrogram,
    htk_mel_filterbank,
    power_to_db,
    repeatpad,
    slaney_mel_filterbank,
)


@dataclass(frozen=True)
class HTSATConfig:
    """HTSAT hyper-parameters (laion_clap ``create_htsat_model`` + ``model_configs/HTSAT-*.json``)."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    spec_size: int = 256
    patch_size: int = 4
    mel_bins: int = 64
    n_fft: int = 1024
    hop: int = 480
    sample_rate: int = SAMPLE_RATE
    fmin: float = 50.0
    fmax: float = 14000.0
    class_num: int = 527
    mlp_ratio: float = 4.0

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


HTSAT_CONFIGS = {
    "HTSAT-tiny": HTSATConfig(),
    "HTSAT-base": HTSATConfig(embed_dim=128, depths=(2, 2, 12, 2)),
}


class _LogmelFilterBank(nn.Module):
    """torchlibrosa ``LogmelFilterBank`` (slaney ``melW``, ref 1, amin 1e-10, no top_db)."""

    def __init__(self, cfg: HTSATConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.melW = nn.Parameter(torch.empty(cfg.n_fft // 2 + 1, cfg.mel_bins), requires_grad=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        c = self.cfg
        with torch.no_grad():
            self.melW.copy_(torch.from_numpy(slaney_mel_filterbank(c.sample_rate, c.n_fft, c.mel_bins,
                                                                   c.fmin, c.fmax)).float())


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * H/w * W/w, w, w, C)``, windows in row-major order."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w, w, c)


def window_reverse(windows: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    b = windows.shape[0] // ((h // w) * (wd // w))
    x = windows.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, -1)


def relative_position_index(w: int) -> torch.Tensor:
    """``(w*w, w*w)`` index into the ``(2w-1)^2`` bias table: ``(dy + w - 1) * (2w - 1) + (dx + w - 1)``."""
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + (w - 1)
    dx = xs[:, None] - xs[None, :] + (w - 1)
    return dy * (2 * w - 1) + dx


def shifted_window_mask(h: int, wd: int, w: int, shift: int) -> torch.Tensor:
    """``(nW, w*w, w*w)`` additive mask (0 / -100) keeping SW-MSA inside the regions the cyclic shift joined."""
    label = torch.zeros(h, wd)
    cuts_h = ((0, h - w), (h - w, h - shift), (h - shift, h))
    cuts_w = ((0, wd - w), (wd - w, wd - shift), (wd - shift, wd))
    n = 0
    for a, b in cuts_h:
        for c, d in cuts_w:
            label[a:b, c:d] = n
            n += 1
    lw = window_partition(label[None, :, :, None], w).reshape(-1, w * w)
    diff = lw[:, None, :] - lw[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    """W-MSA with a learned relative position bias (Swin)."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.dim, self.window, self.heads = dim, window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (S)W-MSA + MLP; no shift when the map is not larger than the window (HTSAT's last stage)."""

    def __init__(self, dim: int, res: tuple[int, int], heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.res = res
        if min(res) <= window:
            window, shift = min(res), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.register_buffer("attn_mask", shifted_window_mask(*res, window, shift) if shift > 0 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.res, x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window).view(-1, self.window**2, c), self.attn_mask)
        y = window_reverse(y.view(-1, self.window, self.window, c), self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat ``[x00, x10, x01, x11]`` -> LayerNorm -> Linear(4C, 2C)."""

    def __init__(self, res: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.res = res
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.res, x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, res: tuple[int, int], depth: int, heads: int, window: int, mlp_ratio: float,
                 downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([SwinBlock(dim, res, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
                                     for i in range(depth)])
        self.downsample = PatchMerging(res, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class AFF(nn.Module):
    """Attentional feature fusion (2-D), present in fusion checkpoints; only used for inputs > 10 s."""

    def __init__(self, channels: int, r: int = 4) -> None:
        super().__init__()
        mid = channels // r

        def branch(pool: bool) -> list[nn.Module]:
            return [*([nn.AdaptiveAvgPool2d(1)] if pool else []), nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid),
                    nn.ReLU(inplace=True), nn.Conv2d(mid, channels, 1), nn.BatchNorm2d(channels)]

        self.local_att = nn.Sequential(*branch(False))
        self.global_att = nn.Sequential(*branch(True))

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        xa = x + residual
        w = torch.sigmoid(self.local_att(xa) + self.global_att(xa))
        return 2 * x * w + 2 * residual * (1 - w)


class PatchEmbed(nn.Module):
    """4x4 patches of the (B, C, 256, 256) HTSAT image; fusion models also fuse the 3 local chunks.

    laion_clap ``htsat.py:PatchEmbed`` with ``fusion_type='aff_2d'``: the global patches come from channel 0
    (the whole clip's mel, shrunk to 10 s when longer); for the ``longer_idx`` rows, channels 1-3 (three 10 s
    chunks) each go through ``mel_conv2d`` (kernel/stride 4x12, i.e. a third of the time resolution), are laid
    side by side along time (3 x 21 = 63 columns), zero-padded to the 64 global columns and fused with the
    global patches by :class:`AFF`. Rows not in ``longer_idx`` use channel 0 only.
    """

    def __init__(self, cfg: HTSATConfig, enable_fusion: bool) -> None:
        super().__init__()
        p = cfg.patch_size
        self.enable_fusion = enable_fusion
        self.proj = nn.Conv2d(1, cfg.embed_dim, p, stride=p)
        self.norm = nn.LayerNorm(cfg.embed_dim)
        if enable_fusion:  # 'aff_2d' (laion_clap hook.py): local branch over 3 chunk mels
            self.mel_conv2d = nn.Conv2d(1, cfg.embed_dim, (p, 3 * p), stride=(p, 3 * p))
            self.fusion_model = AFF(cfg.embed_dim)

    def forward(self, x: torch.Tensor, longer_idx: torch.Tensor | None = None) -> torch.Tensor:
        g = self.proj(x[:, :1])  # (B, E, 64, 64)
        if longer_idx is not None and len(longer_idx) > 0:
            if not self.enable_fusion or x.shape[1] != 4:
                raise ValueError("inputs longer than 10 s need a fusion model and 4-channel mel_fusion")
            local = x[longer_idx, 1:]
            b, c, h, w = local.shape
            local = self.mel_conv2d(local.reshape(b * c, 1, h, w))  # (B' * 3, E, 64, 21)
            local = local.view(b, c, *local.shape[1:]).permute(0, 2, 3, 1, 4).flatten(3)  # (B', E, 64, 63)
            tw = g.shape[-1]
            local = F.pad(local, (0, tw - local.shape[-1])) if local.shape[-1] < tw else local[..., :tw]
            g = g.clone()
            g[longer_idx] = self.fusion_model(g[longer_idx], local)
        return self.norm(g.flatten(2).transpose(1, 2))


class HTSAT(nn.Module):
    """HTSAT (Chen et al., ICASSP 2022) as laion_clap's ``HTSAT_Swin_Transformer``, inference only."""

    def __init__(self, cfg: HTSATConfig, enable_fusion: bool = False) -> None:
        super().__init__()
        self.cfg, self.enable_fusion = cfg, enable_fusion
        self.freq_ratio = cfg.spec_size // cfg.mel_bins
        self.spectrogram_extractor = _Spectrogram(cfg.n_fft, cfg.hop)
        self.logmel_extractor = _LogmelFilterBank(cfg)
        # what training/data.py:get_mel feeds fusion models (torchaudio, HTK scale, no norm); not stored
        htk = htk_mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.mel_bins, cfg.fmin, cfg.fmax)
        self.register_buffer("htk_melW", torch.from_numpy(htk).float(), persistent=False)
        self.bn0 = nn.BatchNorm2d(cfg.mel_bins)
        self.patch_embed = PatchEmbed(cfg, enable_fusion)
        grid = cfg.spec_size // cfg.patch_size
        n = len(cfg.depths)
        self.layers = nn.ModuleList([
            BasicLayer(cfg.embed_dim * 2**i, (grid // 2**i, grid // 2**i), cfg.depths[i], cfg.num_heads[i],
                       cfg.window_size, cfg.mlp_ratio, downsample=i < n - 1) for i in range(n)])
        self.norm = nn.LayerNorm(cfg.num_features)
        sf = cfg.spec_size // 2 ** (n - 1) // cfg.patch_size // self.freq_ratio
        self.tscam_conv = nn.Conv2d(cfg.num_features, cfg.class_num, (sf, 3), padding=(0, 1))
        self.head = nn.Linear(cfg.class_num, cfg.class_num)

    @property
    def frontend(self) -> str:
        """``htk`` (fusion models: torchaudio mel of ``get_mel``) or ``slaney`` (in-network torchlibrosa)."""
        return "htk" if self.enable_fusion else "slaney"

    def logmel(self, waveform: torch.Tensor, frontend: str | None = None) -> torch.Tensor:
        """``(B, L)`` -> ``(B, 1, T, mel_bins)`` dB log-mel, ``T = 1 + L // hop``."""
        spec = self.spectrogram_extractor(waveform)
        fb = self.htk_melW if (frontend or self.frontend) == "htk" else self.logmel_extractor.melW
        return power_to_db(spec @ fb)

    def reshape_wav2img(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, F)`` -> ``(B, C, S, S)``: bicubic stretch to ``S * r`` frames, then the ``r`` time
        chunks stacked along the frequency axis (``r = spec_size // mel_bins = 4``)."""
        s, r = self.cfg.spec_size, self.freq_ratio
        b, c, t, f = x.shape
        if t > s * r or f > s // r:
            raise ValueError(f"log-mel {t}x{f} larger than the HTSAT input {s * r}x{s // r}")
        if t < s * r or f < s // r:
            x = F.interpolate(x, (s * r, s // r), mode="bicubic", align_corners=True)
        x = x.permute(0, 1, 3, 2).reshape(b, c, s // r, r, s).permute(0, 1, 3, 2, 4)
        return x.reshape(b, c, s, s)

    def forward_features(self, x: torch.Tensor, longer_idx: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``(B, C, 256, 256)`` image -> ``embedding (B, 768)``, ``clipwise_output (B, 527)`` and the frame-level
        ``feat_maps (B, 64, 768)`` (VALOR ``utils/clap_utils.py``: the last stage's normed tokens regrouped as
        ``(768, 2 freq bins, 32 time steps)`` and flattened, token ``f * 32 + t``; time step ``t`` covers
        ``[t, t + 1) * 10 / 32`` s of a 10 s input). ``embedding`` is the mean of the 64 tokens."""
        x = self.patch_embed(x, longer_idx)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)  # (B, N, C), N = (S / 32)^2
        b, n, c = x.shape
        side = int(math.isqrt(n))
        g = x.transpose(1, 2).reshape(b, c, side, side)
        fb = side // self.freq_ratio
        g = g.reshape(b, c, side // fb, fb, side).permute(0, 1, 3, 2, 4).reshape(b, c, fb, -1)
        cls = self.tscam_conv(g).flatten(2).mean(-1)
        return {"embedding": g.flatten(2).mean(-1), "clipwise_output": torch.sigmoid(cls),
                "feat_maps": g.flatten(2).transpose(1, 2)}

    def _from_mel(self, mel: torch.Tensor, longer_idx: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``(B, C, T, mel_bins)`` log-mel (C = 1, or 4 for ``mel_fusion``) -> outputs: ``bn0`` per mel bin,
        the image reshape, the Swin stages (laion_clap ``HTSAT_Swin_Transformer.forward``)."""
        x = self.bn0(mel.transpose(1, 3)).transpose(1, 3)
        return self.forward_features(self.reshape_wav2img(x), longer_idx)

    def forward(self, waveform: torch.Tensor, frontend: str | None = None) -> dict[str, torch.Tensor]:
        """``(B, L <= 480000)`` waveform (repeat-padded by the caller) -> outputs. Equal to
        :meth:`forward_inputs` on :meth:`prepare` d inputs that are not ``longer`` (the fusion model then
        uses channel 0 of ``mel_fusion``, the clip's own mel); longer inputs must go through :meth:`prepare`."""
        if waveform.shape[-1] > CLIP_SAMPLES:
            raise ValueError(f"{waveform.shape[-1]} samples > {CLIP_SAMPLES}: inputs longer than 10 s go "
                             "through HTSAT.prepare / forward_inputs (laion_clap's fusion or rand_trunc path)")
        return self._from_mel(self.logmel(waveform, frontend))

    @torch.no_grad()
    def prepare(self, x: torch.Tensor, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One mono 48 kHz clip ``(L,)`` -> ``{"waveform" (480000,), "longer" (), "mel_fusion" (4, 1001, 64)}``
        (the last for fusion models only): laion_clap ``training/data.py:get_audio_features`` with
        ``data_truncating='fusion'``, ``data_filling='repeatpad'``, as ``hook.py`` calls it.

        ``L <= 480000``: repeat-pad; ``mel_fusion`` = the mel four times; ``longer`` False. ``L > 480000``
        (``longer`` True): the mel of the whole clip (``T`` frames, ``chunk = 480000 // hop + 1 = 1001``);
        ``mel_fusion`` = [whole mel shrunk to ``chunk`` frames (``torchvision`` ``Resize``, bilinear,
        antialiased: torchvision >= 0.17's default, laion_clap leaves it to the installed version), and three
        ``chunk``-frame crops starting at one random index from each third of ``range(T - chunk + 1)``
        (``np.array_split``; an empty third uses 0)]; if ``T == chunk`` the clip counts as not longer. The
        waveform is cropped to 480,000 samples at a random offset (what non-fusion models read). laion_clap
        draws from numpy's global state; here ``rng`` (seeded by the caller) makes it reproducible.
        """
        x = x.reshape(-1).float()
        n = x.shape[0]
        if n == 0:
            raise ValueError("empty audio")
        out: dict[str, torch.Tensor] = {}
        longer = False
        if n > CLIP_SAMPLES:
            if self.enable_fusion:
                mel = self.logmel(x[None], "htk")[0, 0]  # (T, 64)
                chunk = CLIP_SAMPLES // self.cfg.hop + 1
                total = mel.shape[0]
                if total == chunk:
                    out["mel_fusion"] = mel.expand(4, -1, -1).clone()
                else:
                    thirds = np.array_split(np.arange(total - chunk + 1), 3)
                    starts = [int(rng.choice(t)) if len(t) else 0 for t in thirds]
                    from torchvision.transforms import InterpolationMode
                    from torchvision.transforms.functional import resize

                    shrunk = resize(mel[None], [chunk, mel.shape[1]], InterpolationMode.BILINEAR, antialias=True)[0]
                    out["mel_fusion"] = torch.stack([shrunk, *(mel[s:s + chunk] for s in starts)])
                    longer = True
            else:
                longer = True
            off = int(rng.integers(0, n - CLIP_SAMPLES + 1))
            x = x[off:off + CLIP_SAMPLES]
        else:
            x = torch.from_numpy(repeatpad(x.cpu().numpy())).to(x.device)
            if self.enable_fusion:
                out["mel_fusion"] = self.logmel(x[None], "htk")[0, 0].expand(4, -1, -1).clone()
        out["waveform"] = x
        out["longer"] = torch.tensor(longer)
        return out

    def forward_inputs(self, inputs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """A batch of :meth:`prepare` d clips -> outputs (laion_clap ``HTSAT_Swin_Transformer.forward``, eval):
        fusion models read ``mel_fusion`` and fuse the local chunks of the ``longer`` rows; non-fusion models
        read the (cropped) waveform through their in-network front end."""
        if self.enable_fusion:
            mel = torch.stack([d["mel_fusion"] for d in inputs])
            longer_idx = torch.where(torch.stack([d["longer"] for d in inputs]))[0].to(mel.device)
            # without longer rows only channel 0 is read: skip resampling the three copies
            return self._from_mel(mel if len(longer_idx) else mel[:, :1], longer_idx)
        return self._from_mel(self.logmel(torch.stack([d["waveform"] for d in inputs]), "slaney"))
