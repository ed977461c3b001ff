"""CLAP port (extractors/llp/clap.py): official key layout, log-mel front ends against numpy, Swin window
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

from extractors import weights as W
from extractors.llp import clap
from extractors.weights import REGISTRY, WeightsError, WeightSpec

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
    prov = W.build_model_weights(other, spec.name, "pretrained", tmp_path)
    assert prov["weights"] == "clap_like"
    torch.testing.assert_close(other.state_dict(), net.state_dict())
    torch.save({"epoch": 1}, tmp_path / spec.filename)
    (tmp_path / (spec.filename + ".sha256")).unlink()
    with pytest.raises(WeightsError, match="no 'state_dict' entry"):
        W.load_state_dict(spec.name, tmp_path)


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
    with pytest.raises(ValueError, match="larger than the HTSAT input|not implemented"):
        clap.HTSAT(clap.HTSAT_CONFIGS["HTSAT-tiny"])(torch.zeros(1, 480001))


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
    wave, meta = clap.decode_audio_48k(vid)
    assert meta["has_audio"] and meta["source_sample_rate"] == 44100 and meta["source_channels"] == 2
    assert abs(wave.size - 2.5 * 48000) < 0.05 * 48000 and np.abs(wave).max() > 0.05
    from extractors.llp import features as llp

    feats, prov = llp.extract_llp_clap(vid, mode="random", seed=2, checkpoint="clap_630k")
    assert feats.shape == (2, 512) and prov["T"] == 2 and prov["weights"]["weights"] == "random"
    assert prov["recipe"]["frontend"] == "slaney" and prov["audio"]["source_sample_rate"] == 44100
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------- independent port (optional)
def test_matches_transformers_clap_and_roberta_when_available() -> None:
    """Cross-check against Hugging Face's own CLAP/RoBERTa ports (random weights; skipped when
    transformers is not installed, as in the project environment: it would downgrade huggingface_hub)."""
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
        ref = F.normalize(hf.get_audio_features(input_features=mel.repeat(1, 4, 1, 1),
                                                is_longer=torch.tensor([[False]])), dim=-1)
        torch.testing.assert_close(mine.encode_audio(x), ref, rtol=1e-4, atol=1e-5)
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
