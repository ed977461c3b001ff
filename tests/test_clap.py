"""CLAP port (extractors/llp/clap/): official key layout, log-mel front ends against numpy, Swin window
attention, per-second embeddings, labelled random mode, loud pretrained failures, tokenizers."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from extractors import weight_loading, weight_registry
from extractors.llp import clap
from extractors.weight_registry import REGISTRY, WeightsError, WeightSpec

FIXTURE = Path(__file__).parent / "fixtures" / "clap_630k_fusion_keys.json"
FUSION_URL = "https://huggingface.co/lukewys/laion_clap/resolve/main/630k-fusion-best.pt"


@pytest.fixture(scope="module")
def random_clap() -> tuple[clap.CLAP, object, dict]:
    return clap.build_clap("random", seed=0)


def _shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------- (a) checkpoint layout
def test_state_dict_matches_official_keys_and_converter_loads_strict(random_clap) -> None:
    fx = json.loads(FIXTURE.read_text())
    want = {k: s for k, s in fx["keys"]}
    model = random_clap[0]
    assert _shapes(model) == want  # fusion checkpoint (VALOR's default), key for key, shape for shape
    absent = tuple(fx["non_fusion_absent"])
    nonfusion = clap.CLAP("HTSAT-tiny", enable_fusion=False)
    assert _shapes(nonfusion) == {k: s for k, s in want.items() if not k.startswith(absent)}
    # a checkpoint as saved by laion_clap training (DDP prefix + the old position_ids buffer) loads strictly
    ckpt = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    for k, shape in fx["dropped_by_converter"]:
        ckpt[f"module.{k}"] = torch.arange(math.prod(shape)).view(shape)
    converted = clap.convert_laion_clap(ckpt)
    nonfusion_sd = {k: v for k, v in converted.items() if not k.startswith(absent)}
    nonfusion.load_state_dict(nonfusion_sd, strict=True)
    model.load_state_dict(converted, strict=True)
    assert REGISTRY[clap.DEFAULT_CHECKPOINT].filename == "630k-fusion-best.pt"
    assert REGISTRY[clap.DEFAULT_CHECKPOINT].converter == "extractors.llp.clap:convert_laion_clap"


def test_registry_unwraps_training_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """laion_clap files are ``{"epoch", "name", "state_dict", ...}`` dicts; the registry unwraps them."""
    spec = WeightSpec(name="clap_like", filename="clap-like.pt", url="file:///nonexistent/clap-like.pt",
                      sha256=None, state_dict_key="state_dict", converter="extractors.llp.clap:convert_laion_clap")
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    net = clap.MLPLayers((4, 4, 4))
    torch.save({"epoch": 45, "name": "run", "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               tmp_path / spec.filename)
    other = clap.MLPLayers((4, 4, 4))
    prov = weight_loading.build_model_weights(other, spec.name, "pretrained", tmp_path)
    assert prov["weights"] == "clap_like"
    torch.testing.assert_close(other.state_dict(), net.state_dict())
    torch.save({"epoch": 1}, tmp_path / spec.filename)
    (tmp_path / (spec.filename + ".sha256")).unlink()
    with pytest.raises(WeightsError, match="no 'state_dict' entry"):
        weight_loading.load_state_dict(spec.name, tmp_path)


# ------------------------------------------------------------------------- (b) front end vs numpy
def _mel_slaney(f: np.ndarray) -> np.ndarray:  # Slaney's Auditory Toolbox scale, written out
    f = np.asarray(f, float)
    return np.where(f < 1000, 3 * f / 200, 15 + 27 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4))


def _hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, float)
    return np.where(m < 15, 200 * m / 3, 1000 * 6.4 ** ((m - 15) / 27))


def _bank(edges: np.ndarray, n_freq: int, sr: float, area_norm: bool) -> np.ndarray:
    freqs = np.linspace(0, sr / 2, n_freq)
    out = np.zeros((n_freq, len(edges) - 2))
    for m in range(len(edges) - 2):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        for i, f in enumerate(freqs):
            if lo <= f <= c:
                out[i, m] = (f - lo) / (c - lo)
            elif c < f <= hi:
                out[i, m] = (hi - f) / (hi - c)
        if area_norm:
            out[:, m] *= 2.0 / (hi - lo)
    return out


def _numpy_logmel(x: np.ndarray, bank: np.ndarray, n_fft: int = 1024, hop: int = 480) -> np.ndarray:
    xp = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    n = 1 + (len(xp) - n_fft) // hop
    frames = np.stack([xp[i * hop: i * hop + n_fft] for i in range(n)])
    spec = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1)) ** 2
    return 10 * np.log10(np.maximum(spec @ bank, 1e-10))


def test_logmel_front_ends_match_numpy(random_clap) -> None:
    branch = random_clap[0].audio_branch
    sr, n_fft = 48000, 1024
    slaney = _bank(_hz_slaney(np.linspace(_mel_slaney(50), _mel_slaney(14000), 66)), 513, sr, True)
    htk_m = np.linspace(2595 * np.log10(1 + 50 / 700), 2595 * np.log10(1 + 14000 / 700), 66)
    htk = _bank(700 * (10 ** (htk_m / 2595) - 1), 513, sr, False)
    np.testing.assert_allclose(branch.logmel_extractor.melW.numpy(), slaney, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(branch.htk_melW.numpy(), htk, rtol=1e-5, atol=1e-7)
    rng = np.random.default_rng(0)
    t = np.arange(int(0.4 * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    x[: 2000] = 0.0  # a silent stretch exercises the 1e-10 clamp
    with torch.no_grad():
        for front, bank in (("slaney", slaney), ("htk", htk)):
            got = branch.logmel(torch.from_numpy(x)[None], front)[0, 0].numpy()
            want = _numpy_logmel(x, bank, n_fft)
            assert got.shape == want.shape == (1 + x.size // 480, 64)
            np.testing.assert_allclose(got, want, atol=0.02, rtol=1e-3)
    assert branch.frontend == "htk" and clap.CLAP(enable_fusion=False).audio_branch.frontend == "slaney"


# ------------------------------------------------------------------------- (c) Swin window attention
def test_relative_position_index_windows_and_masks(random_clap) -> None:
    w = 3
    idx = clap.relative_position_index(w)
    want = torch.zeros(w * w, w * w, dtype=torch.long)
    for a in range(w * w):
        for b in range(w * w):
            (ya, xa), (yb, xb) = divmod(a, w), divmod(b, w)
            want[a, b] = (ya - yb + w - 1) * (2 * w - 1) + (xa - xb + w - 1)
    assert torch.equal(idx, want)
    assert idx.min() == 0 and idx.max() == (2 * w - 1) ** 2 - 1 and (idx.diag() == (w - 1) * (2 * w) ).all()
    x = torch.randn(2, 8, 12, 5)
    win = clap.window_partition(x, 4)
    assert win.shape == (2 * 2 * 3, 4, 4, 5) and torch.equal(win[1], x[0, :4, 4:8])
    assert torch.equal(clap.window_reverse(win, 4, 8, 12), x)
    mask = clap.shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16) and set(mask.unique().tolist()) <= {0.0, -100.0}
    assert (mask[0] == 0).all() and (mask[3] != 0).any() and torch.equal(mask, mask.transpose(1, 2))
    # last window mixes 4 regions of 2x2 tokens each: 4 tokens see 4 (themselves incl.)
    assert ((mask[3] == 0).sum(1) == 4).all()
    # W-MSA with a zero bias table is plain multi-head attention inside each window
    att = clap.WindowAttention(8, 2, 2)
    torch.nn.init.zeros_(att.relative_position_bias_table)
    t = torch.randn(3, 4, 8)
    q, k, v = att.qkv(t).view(3, 4, 3, 2, 4).permute(2, 0, 3, 1, 4)
    ref = att.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, 4, 8))
    torch.testing.assert_close(att(t), ref, rtol=1e-5, atol=1e-6)
    layers = random_clap[0].audio_branch.layers
    assert layers[0].blocks[1].attn_mask.shape == (64, 64, 64) and layers[0].blocks[1].shift == 4
    assert layers[3].blocks[1].shift == 0 and layers[3].blocks[1].attn_mask is None


# ------------------------------------------------------------------------- (d) per-second embeddings
def test_ten_second_clip_gives_ten_unit_embeddings(random_clap) -> None:
    model, tok, _ = random_clap
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal(480000)).astype(np.float32)
    x[96000:144000] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)
    feats = clap.clap_audio_features(model, x, batch=4)
    assert feats.shape == (10, 512) and feats.dtype == np.float32 and np.isfinite(feats).all()
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(feats[2], feats[3])
    # segment 2 alone: int16 round trip, repeat-pad 48000 -> 10 copies, its own forward pass
    seg = clap.repeatpad(clap.quantize_int16(x[96000:144000]))
    np.testing.assert_array_equal(seg.reshape(10, 48000), np.tile(clap.quantize_int16(x[96000:144000]), (10, 1)))
    with torch.no_grad():
        alone = model.encode_audio(torch.from_numpy(seg)[None]).numpy()[0]
        # the fusion-only local branch is not used for <= 10 s inputs (VALOR's case)
        torch.nn.init.normal_(model.audio_branch.patch_embed.mel_conv2d.weight)
        again = model.encode_audio(torch.from_numpy(seg)[None]).numpy()[0]
    np.testing.assert_allclose(feats[2], alone, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(alone, again)
    emb, prompts = clap.clap_text_embeddings(model, tok, ["Dog", "Frying_(food)", "Dog"])
    assert prompts == ["This is the sound of dog", "This is the sound of frying (food)", "This is the sound of dog"]
    assert emb.shape == (3, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb[0], emb[2], rtol=1e-5, atol=1e-6)


def test_segmentation_quantisation_and_padding_rules() -> None:
    assert clap.default_n_segments(480000) == 10 and clap.default_n_segments(479040) == 10  # 9.98 s
    assert clap.default_n_segments(int(2.6 * 48000)) == 2 and clap.default_n_segments(20 * 48000) == 10
    assert clap.segment_bounds(480000, 10)[3] == (144000, 192000)
    b = clap.segment_bounds(479040, 10)  # VALOR: starts round(linspace(0, N, 11)), N // 10 long
    assert b[0] == (0, 47904) and b[9] == (431136, 479040)
    q = clap.quantize_int16(np.array([2.0, -1.5, 0.5, 1e-6], np.float32))
    np.testing.assert_array_equal(q, np.array([32767, -32767, 16383, 0], np.float32) / np.float32(32767))
    p = clap.repeatpad(np.arange(1, 70001, dtype=np.float32))
    assert p.shape == (480000,) and p[69999] == 70000 and p[70000] == 1 and p[420000 - 1] == 70000
    assert (p[420000:] == 0).all()
    with pytest.raises(ValueError, match="longer than"):
        clap.repeatpad(np.zeros(480001, np.float32))
    with pytest.raises(ValueError, match="go through HTSAT.prepare"):
        clap.HTSAT(clap.HTSAT_CONFIGS["HTSAT-tiny"])(torch.zeros(1, 480001))


# ------------------------------------------------------------------------- (d2) fusion branch (> 10 s)
def _bn_eval(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    shape = (1, -1, 1, 1)
    return (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps) * \
        bn.weight.view(shape) + bn.bias.view(shape)


def _conv_by_patches(img: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """A stride == kernel Conv2d written as patch extraction + matrix product: ``(1, H, W)`` -> ``(E, H', W')``."""
    kh, kw = conv.kernel_size
    h, w = img.shape[-2] // kh, img.shape[-1] // kw
    patches = img[0, : h * kh, : w * kw].reshape(h, kh, w, kw).permute(0, 2, 1, 3).reshape(h, w, kh * kw)
    return (patches @ conv.weight.reshape(conv.out_channels, -1).T + conv.bias).permute(2, 0, 1)


@pytest.fixture(scope="module")
def fusion_model() -> clap.CLAP:
    """A random fusion CLAP whose AFF batch norms have non-trivial running statistics."""
    model, _, _ = clap.build_clap("random", seed=4)
    g = torch.Generator().manual_seed(0)
    for m in model.audio_branch.patch_embed.fusion_model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model


def test_fusion_branch_is_used_exactly_for_inputs_longer_than_10s(fusion_model) -> None:
    model, branch = fusion_model, fusion_model.audio_branch
    rng = np.random.default_rng(3)
    x10 = (0.1 * rng.standard_normal(480000)).astype(np.float32)
    x12 = (0.1 * rng.standard_normal(12 * 48000)).astype(np.float32)
    edge = (0.1 * rng.standard_normal(480000 + 100)).astype(np.float32)  # 1001 mel frames, like 10 s
    with torch.no_grad():
        p10, p12, pedge = (branch.prepare(torch.from_numpy(v), np.random.default_rng(0)) for v in (x10, x12, edge))
        assert not p10["longer"] and not pedge["longer"] and p12["longer"]
        for p in (p10, pedge):
            assert p["mel_fusion"].shape == (4, 1001, 64) and all(torch.equal(p["mel_fusion"][0], c)
                                                                  for c in p["mel_fusion"][1:])
        torch.testing.assert_close(p10["mel_fusion"][0], branch.logmel(torch.from_numpy(x10)[None], "htk")[0, 0])
        # > 10 s: channel 0 = the whole mel shrunk to 1001 frames, channels 1-3 = 1001-frame crops, one
        # starting in each third of the possible starts (np.array_split)
        mel = branch.logmel(torch.from_numpy(x12)[None], "htk")[0, 0]
        assert mel.shape == (1201, 64) and p12["mel_fusion"].shape == (4, 1001, 64)
        shrunk = F.interpolate(mel[None, None], size=(1001, 64), mode="bilinear", align_corners=False,
                               antialias=True)[0, 0]
        torch.testing.assert_close(p12["mel_fusion"][0], shrunk)
        thirds = np.array_split(np.arange(1201 - 1001 + 1), 3)
        for third, ch in zip(thirds, p12["mel_fusion"][1:], strict=True):
            assert any(torch.equal(mel[s:s + 1001], ch) for s in third)
        assert p12["waveform"].shape == (480000,)
        # the local branch changes exactly the longer input's embedding
        clips = [x10, x12, edge]
        before = model.audio_embedding_from_data(clips, np.random.default_rng(0))
        torch.testing.assert_close(before[0], model.encode_audio(torch.from_numpy(clap.quantize_int16(x10))[None])[0])
        saved = branch.patch_embed.mel_conv2d.weight.clone()
        torch.nn.init.normal_(branch.patch_embed.mel_conv2d.weight)
        after = model.audio_embedding_from_data(clips, np.random.default_rng(0))
        branch.patch_embed.mel_conv2d.weight.copy_(saved)
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert (before[1] - after[1]).abs().max() > 1e-3
    # seeded: the same rng gives the same chunks; the non-fusion model crops 10 s instead
    with torch.no_grad():
        again = model.audio_embedding_from_data(clips, np.random.default_rng(0))
        plain = clap.CLAP(enable_fusion=False).eval()
        pq = plain.audio_branch.prepare(torch.from_numpy(x12), np.random.default_rng(1))
    torch.testing.assert_close(before, again)
    assert pq["longer"] and "mel_fusion" not in pq and pq["waveform"].shape == (480000,)
    off = int(np.flatnonzero(x12 == pq["waveform"][0].item())[0])
    np.testing.assert_array_equal(pq["waveform"].numpy(), x12[off:off + 480000])


def test_fusion_patch_embedding_matches_an_independent_computation(fusion_model) -> None:
    """aff_2d fusion (laion_clap htsat.py PatchEmbed + feature_fusion.py AFF) recomputed by hand: patches as
    matrix products, the 3 chunk maps side by side along time, zero-padded, attentional fusion in eval mode."""
    branch = fusion_model.audio_branch
    pe, aff = branch.patch_embed, branch.patch_embed.fusion_model
    x = (0.1 * np.random.default_rng(5).standard_normal(15 * 48000)).astype(np.float32)
    with torch.no_grad():
        p = branch.prepare(torch.from_numpy(x), np.random.default_rng(2))
        img = branch.reshape_wav2img(branch.bn0(p["mel_fusion"][None].transpose(1, 3)).transpose(1, 3))
        got = pe(img, torch.tensor([0]))[0]  # (4096, 96)
        glob = _conv_by_patches(img[0, :1], pe.proj)  # (96, 64, 64)
        chunks = [_conv_by_patches(img[0, c:c + 1], pe.mel_conv2d) for c in (1, 2, 3)]
        assert chunks[0].shape == (96, 64, 21)
        loc = torch.cat([*chunks, torch.zeros(96, 64, 1)], dim=-1)
        xa = (glob + loc)[None]

        def att(t: torch.Tensor, seq: torch.nn.Sequential) -> torch.Tensor:
            convs = [m for m in seq if isinstance(m, torch.nn.Conv2d)]
            bns = [m for m in seq if isinstance(m, torch.nn.BatchNorm2d)]
            h = torch.einsum("oi,bihw->bohw", convs[0].weight[:, :, 0, 0], t) + convs[0].bias.view(1, -1, 1, 1)
            h = torch.relu(_bn_eval(h, bns[0]))
            h = torch.einsum("oi,bihw->bohw", convs[1].weight[:, :, 0, 0], h) + convs[1].bias.view(1, -1, 1, 1)
            return _bn_eval(h, bns[1])

        w = torch.sigmoid(att(xa, aff.local_att) + att(xa.mean((2, 3), keepdim=True), aff.global_att))[0]
        fused = 2 * glob * w + 2 * loc * (1 - w)
        want = F.layer_norm(fused.flatten(1).T, (96,), pe.norm.weight, pe.norm.bias, pe.norm.eps)
        plain = pe(img, torch.tensor([], dtype=torch.long))[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert (got - plain).abs().max() > 1e-2  # the fusion changed the patches


# ------------------------------------------------------------------------- (d3) frame-level feature maps
def test_token_layout_of_the_feature_maps() -> None:
    """Image rows are chunk * 64 + mel bin (reshape_wav2img), token (r, c) of the 8x8 grid covers rows
    [32r, 32r + 32) and columns [32c, 32c + 32); feat_maps token f * 32 + t is grid (2 (t // 8) + f, t % 8),
    so t runs through the 10 s in order (VALOR clap_utils.py / laion_clap forward_features)."""
    branch = clap.HTSAT(clap.HTSAT_CONFIGS["HTSAT-tiny"])
    mel = torch.arange(1024.0)[None, None, :, None] + 1000.0 * torch.arange(64.0)[None, None, None, :]
    img = branch.reshape_wav2img(mel)
    assert img.shape == (1, 1, 256, 256)
    for j, f, w in ((0, 0, 0), (1, 5, 7), (3, 63, 255), (2, 40, 100)):
        assert img[0, 0, j * 64 + f, w] == 256 * j + w + 1000 * f

    class Grid(torch.nn.Module):  # stands in for patch embedding + Swin stages: token n carries (r, c)
        def forward(self, x: torch.Tensor, longer_idx: object = None) -> torch.Tensor:
            r, c = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
            tok = torch.zeros(1, 64, 768)
            tok[0, :, 0], tok[0, :, 1] = r.flatten(), c.flatten()
            return tok

    branch.patch_embed, branch.layers, branch.norm = Grid(), torch.nn.ModuleList(), torch.nn.Identity()
    maps = branch.forward_features(torch.zeros(1, 1, 256, 256))["feat_maps"][0]
    assert maps.shape == (64, 768)
    for f in (0, 1):
        for t in range(32):
            assert maps[f * 32 + t, :2].tolist() == [2 * (t // 8) + f, t % 8]


def test_feature_maps_pool_to_the_embedding_and_per_second_as_valor(random_clap) -> None:
    model = random_clap[0]
    x = (0.1 * np.random.default_rng(7).standard_normal(480000)).astype(np.float32)
    x[240000:288000] += 0.4 * np.sin(2 * np.pi * 3000 * np.arange(48000) / 48000).astype(np.float32)
    with torch.no_grad():
        out = model.audio_branch(torch.from_numpy(clap.valor_window(x, 10))[None])
        maps = out["feat_maps"]
        assert maps.shape == (1, 64, 768)
        # the 64 frame-level tokens average to the pooled pre-projection embedding of the clip
        torch.testing.assert_close(maps.mean(1), out["embedding"], rtol=1e-5, atol=1e-6)
        emb = F.normalize(model.audio_projection(maps.mean(1)), dim=-1)
        torch.testing.assert_close(emb, model.encode_audio(torch.from_numpy(clap.quantize_int16(x))[None]),
                                   rtol=1e-5, atol=1e-6)
        sec = clap.clap_feature_maps(model, x)
        assert sec.shape == (10, 768) and sec.dtype == np.float32
        np.testing.assert_allclose(sec, clap.maps_to_seconds(maps)[0].numpy(), rtol=1e-5, atol=1e-6)
        # VALOR's MMIL_Net on the maps: (768, 2, 32) -> bicubic (2, 1024) -> fc_a -> freq mean -> 10 segments
        fc = torch.nn.Linear(768, 16)
        x1 = maps.permute(0, 2, 1).reshape(-1, 768, 2, 32)
        up = F.interpolate(x1, size=(2, 1024), mode="bicubic")
        up = fc(up.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).mean(dim=2)
        valor = F.adaptive_avg_pool1d(up, 10).permute(0, 2, 1)[0]
        torch.testing.assert_close(fc(torch.from_numpy(sec)), valor, rtol=1e-4, atol=1e-5)
    # time layout: maps whose tokens hold their own centre time pool to the centre of each second
    t = torch.arange(32.0)
    ramp = ((t + 0.5) * 10 / 32).repeat(2)[None, :, None].expand(1, 64, 3)
    centres = clap.maps_to_seconds(ramp)[0, :, 0]
    np.testing.assert_allclose(centres.numpy(), np.arange(10) + 0.5, atol=0.06)


def test_windows_of_long_and_short_audio(random_clap) -> None:
    model = random_clap[0]
    assert clap.window_bounds(23 * 48000, 23) == [(0, 480000, 10), (480000, 960000, 10), (960000, 1104000, 3)]
    assert clap.window_bounds(479040, 10) == [(0, 479040, 10)]
    short = np.linspace(-0.5, 0.5, 479040, dtype=np.float32)  # 9.98 s: VALOR index-resamples it to 10 s
    w = clap.valor_window(short, 10)
    idx = np.round(np.linspace(0, 479039, 480000)).astype(np.int64)
    np.testing.assert_array_equal(w, clap.quantize_int16(short[idx]))
    two = np.random.default_rng(0).uniform(-0.5, 0.5, 96000).astype(np.float32)
    np.testing.assert_array_equal(clap.valor_window(two, 2), np.tile(clap.quantize_int16(two), 5))
    with pytest.raises(ValueError, match="1..10 seconds"):
        clap.valor_window(two, 11)
    x = (0.1 * np.random.default_rng(8).standard_normal(23 * 48000)).astype(np.float32)
    sec = clap.clap_feature_maps(model, x, n_segments=23, batch=2)
    assert sec.shape == (23, 768)
    np.testing.assert_allclose(sec[10:20], clap.clap_feature_maps(model, x[480000:960000]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sec[20:], clap.clap_feature_maps(model, x[960000:], n_segments=3), rtol=1e-4,
                               atol=1e-5)


# ------------------------------------------------------------------------- (e) weights modes
def test_random_mode_is_labelled_and_pretrained_fails_loudly(random_clap, tmp_path: Path) -> None:
    _, tok, prov = random_clap
    assert prov["weights"] == "random" and prov["seed"] == 0 and prov["architecture_of"] == "clap_630k_fusion"
    assert prov["tokenizer"] == "byte-fallback (random weights)" and isinstance(tok, clap.ByteFallbackTokenizer)
    assert prov["enable_fusion"] is True and prov["frontend"] == "htk"
    with pytest.raises(WeightsError, match="630k-fusion-best.pt") as err:
        clap.build_clap("pretrained", root=tmp_path)
    assert FUSION_URL in str(err.value) and str(tmp_path) in str(err.value)
    (tmp_path / "630k-fusion-best.pt").write_bytes(b"not read before the tokenizer check")
    with pytest.raises(WeightsError, match="https://huggingface.co/roberta-base/resolve/main/vocab.json"):
        clap.build_clap("pretrained", root=tmp_path)
    with pytest.raises(KeyError, match="unknown CLAP checkpoint"):
        clap.build_clap("random", checkpoint="clap_music")


def test_random_weights_are_seeded(random_clap) -> None:
    a = random_clap[0]
    b, _, _ = clap.build_clap("random", seed=0)
    for k in ("audio_branch.layers.2.blocks.3.attn.qkv.weight", "text_branch.pooler.dense.weight",
              "audio_branch.spectrogram_extractor.stft.conv_real.weight"):
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
    # the STFT kernels are DSP constants, restored (not randomised) in random mode
    real, _ = clap.dft_kernels(1024)
    np.testing.assert_allclose(a.audio_branch.spectrogram_extractor.stft.conv_real.weight[:, 0].numpy(), real,
                               atol=1e-6)


# ------------------------------------------------------------------------- (f) tokenizers
def test_byte_fallback_tokenizer() -> None:
    tok = clap.ByteFallbackTokenizer()
    out = tok(["Dog", "é" + "a" * 100])
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (2, 77) and ids.dtype == torch.long
    assert ids[0, :6].tolist() == [0, 4 + ord("D"), 4 + ord("o"), 4 + ord("g"), 2, 1]
    assert (ids[0, 5:] == 1).all() and mask[0].tolist() == [1] * 5 + [0] * 72
    assert ids[1, 1:3].tolist() == [4 + 0xC3, 4 + 0xA9] and ids[1, -1] == 2 and mask[1].all()


def test_roberta_bpe_tokenizer_on_a_tiny_vocabulary(tmp_path: Path) -> None:
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "T": 4, "h": 5, "is": 6, "Th": 7, "This": 8,
             "Ġ": 9, "Ġd": 10, "o": 11, "g": 12, "Ġdo": 13, "Ġdog": 14, "i": 15, "s": 16, "d": 17, "Ths": 18}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nT h\ni s\nTh is\nĠ d\nĠd o\nĠdo g\nTh s\n")
    tok = clap.RobertaBPETokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert tok.encode("This dog") == [8, 14]
    assert tok.encode("dogs!") == [17, 11, 12, 16, 3]  # no 'Ġ' before the first word, '!' unknown
    out = tok(["This dog"])
    assert out["input_ids"][0, :5].tolist() == [0, 8, 14, 2, 1] and out["attention_mask"][0].sum() == 4


# ------------------------------------------------------------------------- LLP entry point
def test_extract_llp_clap_from_video(tmp_path: Path) -> None:
    import imageio_ffmpeg

    vid = tmp_path / "tone clip.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=25:duration=2.5", "-f", "lavfi", "-i",
                    "sine=frequency=880:sample_rate=44100:duration=2.5", "-ac", "2", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-y", str(vid)], check=True)
    from extractors.audio import load_audio

    wave, meta = load_audio(vid, clap.SAMPLE_RATE, 10.0, resampler="soxr")
    assert meta["has_audio"] and meta["source_sample_rate"] == 44100 and meta["source_channels"] == 2
    assert abs(wave.size - 2.5 * 48000) < 0.05 * 48000 and np.abs(wave).max() > 0.05
    from extractors.llp import features as llp

    out, prov = llp.extract_llp_clap(vid, mode="random", seed=2, checkpoint="clap_630k", kinds=("clap", "clap_maps"))
    feats, maps = out["clap"], out["clap_maps"]
    assert feats.shape == (2, 512) and prov["T"] == 2 and prov["weights"]["weights"] == "random"
    assert prov["recipe"]["frontend"] == "slaney" and prov["audio"]["source_sample_rate"] == 44100
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    # the maps of the 2 whole seconds: one HTSAT pass over the clip (2 s -> repeat-padded 10 s)
    assert maps.shape == (2, 768) and maps.dtype == np.float32 and np.isfinite(maps).all()
    model, _, _ = clap.build_clap("random", weight_registry.DEFAULT_ROOT, 2, "clap_630k")  # seeded: the same weights
    np.testing.assert_allclose(maps, clap.clap_feature_maps(model, wave, n_segments=2), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="non-empty subset"):
        llp.extract_llp_clap(vid, mode="random", kinds=("vggish",))


# ------------------------------------------------------------------------- independent port (optional)
def hf_audio(hf: torch.nn.Module, **inputs: torch.Tensor) -> torch.Tensor:
    """L2-normalised audio embeddings of Hugging Face's ``ClapModel`` (a tensor in transformers 4.x, the
    output's ``pooler_output`` from 5.0 on)."""
    out = hf.get_audio_features(**inputs)
    return F.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)


def test_matches_transformers_clap_and_roberta_when_available() -> None:
    """Cross-check against Hugging Face's own CLAP/RoBERTa ports (random weights). transformers is in the
    ``test`` extra (README "Packages"), so CI runs it; a runtime-only install skips it."""
    tr = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = tr.ClapConfig()
    cfg.audio_config.enable_fusion = True
    hf = tr.ClapModel(cfg).eval()
    sd = {k: (v if not v.is_floating_point() else (torch.rand_like(v) + 0.5 if "running_var" in k
              else v + 0.05 * torch.randn_like(v))) for k, v in hf.state_dict().items()}
    hf.load_state_dict(sd)
    ren = [("audio_model.audio_encoder.", "audio_branch."), ("batch_norm", "bn0"), ("layernorm_before", "norm1"),
           ("layernorm_after", "norm2"), ("attention.self.relative", "attn.relative"),
           ("attention.output.dense", "attn.proj"), ("intermediate.dense", "mlp.fc1"), ("linear1", "0"),
           ("linear2", "2")]
    mapped: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not k.startswith(("audio_model.", "audio_projection.")):
            continue
        for a, b in ren:
            k = k.replace(a, b)
        mapped[k.replace(".output.dense", ".mlp.fc2")] = v
    for k in [k for k in mapped if ".attention.self.query." in k]:
        base, kind = k.split(".attention.self.query.")
        mapped[f"{base}.attn.qkv.{kind}"] = torch.cat([mapped.pop(f"{base}.attention.self.{n}.{kind}")
                                                       for n in ("query", "key", "value")])
    mine = clap.CLAP("HTSAT-tiny", enable_fusion=True).eval()
    assert not mine.load_state_dict(mapped, strict=False).unexpected_keys
    x = torch.from_numpy((0.2 * np.random.default_rng(0).standard_normal((1, 480000))).astype(np.float32))
    with torch.no_grad():
        mel = mine.audio_branch.logmel(x)
        ref = hf_audio(hf, input_features=mel.repeat(1, 4, 1, 1), is_longer=torch.tensor([[False]]))
        torch.testing.assert_close(mine.encode_audio(x), ref, rtol=1e-4, atol=1e-5)
        # > 10 s: HF's fused patch embedding (is_longer) against the port's fusion branch, same mel_fusion
        long_in = mine.audio_branch.prepare(torch.from_numpy(np.tile(x[0].numpy(), 2)[:700000]),
                                            np.random.default_rng(0))
        assert long_in["longer"]
        ref_long = hf_audio(hf, input_features=long_in["mel_fusion"][None], is_longer=torch.tensor([[True]]))
        got_long = F.normalize(mine.audio_projection(mine.audio_branch.forward_inputs([long_in])["embedding"]),
                               dim=-1)
        torch.testing.assert_close(got_long, ref_long, rtol=1e-4, atol=1e-5)
    fe = tr.ClapFeatureExtractor(frequency_min=50, frequency_max=14000)  # laion_clap's fmin (HF default: 0)
    seg = x[0, :70000].numpy()
    want = fe(seg, sampling_rate=48000, truncation="fusion", padding="repeatpad", return_tensors="pt")
    with torch.no_grad():
        got = mine.audio_branch.logmel(torch.from_numpy(clap.repeatpad(seg))[None])
    np.testing.assert_allclose(got[0, 0].numpy(), want["input_features"][0, 0].numpy(), atol=5e-3)
    rob = tr.RobertaModel(tr.RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                                           layer_norm_eps=1e-5, pad_token_id=1)).eval()
    enc = clap.RobertaEncoder().eval()
    enc.load_state_dict(rob.state_dict(), strict=True)
    tok = clap.ByteFallbackTokenizer()(["This is the sound of dog", "x"])
    with torch.no_grad():
        torch.testing.assert_close(enc(tok["input_ids"], tok["attention_mask"]),
                                   rob(**tok)["pooler_output"], rtol=1e-4, atol=1e-5)


def test_bpe_tokenizer_matches_hugging_face_when_available(tmp_path: Path) -> None:
    """The port's byte-level BPE against Hugging Face's slow ``RobertaTokenizer`` and the ``tokenizers`` library
    on a small byte-level vocabulary (every byte, a few merges), prompts with spaces, case, punctuation and
    non-ASCII text; ``input_ids`` and ``attention_mask`` as laion_clap calls it (max_length 77)."""
    tr = pytest.importorskip("transformers")
    tk = pytest.importorskip("tokenizers")
    from extractors.llp.clap.tokenizer import _bytes_to_unicode

    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "s"), ("o", "u"), ("Ġs", "ou"), ("n", "d"),
              ("Ġsou", "nd"), ("Ġ", "o"), ("Ġo", "f"), ("T", "h"), ("i", "s"), ("Th", "is"), ("Ġ", "is")]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                         encoding="utf-8")
    ours = clap.RobertaBPETokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    slow = tr.RobertaTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    fast = tk.ByteLevelBPETokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    texts = ["This is the sound of dog", "this is the sound of frying (food)", "Violin fiddle", "  two  spaces",
             "Café, naïve — 東京!", "x" * 100]
    for text in texts:
        want = slow(text, add_special_tokens=False)["input_ids"]
        assert ours.encode(text) == want == fast.encode(text).ids, text
    got = ours(texts)
    ref = slow(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    torch.testing.assert_close(got["input_ids"], ref["input_ids"])
    torch.testing.assert_close(got["attention_mask"], ref["attention_mask"])
