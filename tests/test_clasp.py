"""CLASP and MIL baseline: agreement score, anchor selection, masking, gradients, detection, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from models.localizers.clasp import CLASP, CLASPConfig, agreement_score, local_windows, topk_eligible
from models.localizers.input_norm import fit_input_norm
from models.localizers.mil import MILBaseline, MILConfig
from models.localizers.pooling import detect_from_probs, mil_pool
from models.localizers.registry import MODELS, build_model, make_config, register

C, DA, DV = 5, 12, 20


def _batch(lengths: list[int], T: int, seed: int = 0, pad_value: float = 0.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    audio = torch.randn(B, T, DA, generator=g)
    visual = torch.randn(B, T, DV, generator=g)
    audio[~mask] = pad_value
    visual[~mask] = pad_value
    labels = (torch.rand(B, C, generator=g) > 0.5).float()
    labels[:, 0] = 1.0
    return {"audio": audio, "visual": visual, "mask": mask, "labels": labels}


def _small_cfg(**kw) -> CLASPConfig:
    base = dict(num_classes=C, audio_dim=DA, visual_dim=DV, hidden_dim=16, n_heads=2, t_max=64,
                n_global=4, n_local=2, n_windows=5)
    base.update(kw)
    return CLASPConfig(**base)


# ------------------------------------------------------------------ agreement score (MEAE)
def test_agreement_matches_scipy_jsd_and_is_bounded_symmetric():
    g = torch.Generator().manual_seed(1)
    pa = torch.rand(7, 9, C, generator=g)
    pv = torch.rand(7, 9, C, generator=g)
    s = agreement_score(pa, pv, eps=0.0)
    assert s.shape == (7, 9)
    assert torch.all(s >= 0) and torch.all(s <= 1)
    torch.testing.assert_close(s, agreement_score(pv, pa, eps=0.0))
    qa = (pa / pa.sum(-1, keepdim=True)).reshape(-1, C).double().numpy()
    qv = (pv / pv.sum(-1, keepdim=True)).reshape(-1, C).double().numpy()
    ref = 1.0 - np.array([jensenshannon(a, b, base=2) ** 2 for a, b in zip(qa, qv, strict=True)])
    np.testing.assert_allclose(s.reshape(-1).numpy(), ref, atol=1e-5)


def test_agreement_is_one_for_identical_and_decreases_with_divergence():
    g = torch.Generator().manual_seed(2)
    pa = torch.rand(C, generator=g)
    torch.testing.assert_close(agreement_score(pa, pa.clone()), torch.tensor(1.0))
    other = torch.zeros(C)
    other[int(torch.argmin(pa))] = 1.0  # mass where audio has the least
    lams = torch.linspace(0, 1, 11)
    scores = torch.stack([agreement_score(pa, (1 - lam) * pa + lam * other) for lam in lams])
    assert scores[0] == pytest.approx(1.0, abs=1e-6)
    assert torch.all(scores[1:] < scores[:-1])
    # disjoint one-hot distributions: JSD = 1 bit, agreement 0
    e0, e1 = torch.eye(C)[0], torch.eye(C)[1]
    assert float(agreement_score(e0, e1, eps=0.0)) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ anchor selection (CSAI)
def test_topk_eligible_never_returns_padding_even_with_high_padded_scores():
    score = torch.tensor([[0.1, 0.9, 0.3, 0.5, 99.0, 98.0, 97.0, 96.0]])
    eligible = torch.tensor([[True] * 4 + [False] * 4])
    assert topk_eligible(score, eligible, 3).tolist() == [[1, 3, 2]]
    # fewer eligible steps than K: valid anchors repeat cyclically in score order
    assert topk_eligible(score, eligible, 6).tolist() == [[1, 3, 2, 0, 1, 3]]


def test_local_windows_match_paper_partition_at_full_length():
    T, M = 224, 14
    mask = torch.ones(1, T, dtype=torch.bool)
    w = local_windows(mask, M)[0]
    for m in range(M):
        assert w[m].nonzero().flatten().tolist() == list(range(16 * m, 16 * m + 16))
    # a short video: windows cover exactly its valid steps, each at least one step, never padding
    mask = torch.arange(T)[None] < 9
    w = local_windows(mask, M)[0]
    assert w.sum(dim=1).min() >= 1
    assert not w[:, 9:].any()
    assert torch.equal(w.any(dim=0)[:9], torch.ones(9, dtype=torch.bool))


def test_model_anchors_are_true_topk_of_score_inside_valid_length():
    torch.manual_seed(0)
    cfg = _small_cfg()
    model = CLASP(cfg).eval()
    lengths = [40, 23, 3]  # the last one is shorter than K = 4
    batch = _batch(lengths, 40, pad_value=50.0)
    with torch.no_grad():
        out = model(batch)
    s = out["score"].numpy()
    ig = out["anchor_idx_global"].numpy()
    il = out["anchor_idx_local"].numpy()
    assert ig.shape == (3, cfg.n_global) and il.shape == (3, cfg.n_windows, cfg.n_local)
    for b, L in enumerate(lengths):
        assert ig[b].max() < L and il[b].max() < L
        order = np.argsort(-s[b, :L], kind="stable")
        n = min(L, cfg.n_global)
        np.testing.assert_allclose(np.sort(s[b, ig[b, :n]]), np.sort(s[b, order[:n]]))
        if L < cfg.n_global:
            assert sorted(set(ig[b].tolist())) == list(range(L))
        bounds = [(m * L // cfg.n_windows, max((m + 1) * L // cfg.n_windows, m * L // cfg.n_windows + 1))
                  for m in range(cfg.n_windows)]
        for m, (a, e) in enumerate(bounds):
            assert np.all((il[b, m] >= a) & (il[b, m] < e))
            kk = min(cfg.n_local, e - a)
            np.testing.assert_allclose(np.sort(s[b, il[b, m, :kk]]), np.sort(s[b, a:e])[::-1][:kk][::-1])


# ------------------------------------------------------------------ shapes, masking, gradients
def test_output_shapes_and_padding_zeroed():
    torch.manual_seed(0)
    cfg = _small_cfg()
    model = CLASP(cfg)
    batch = _batch([30, 12], 32)
    out = model(batch)
    assert out["p_av"].shape == (2, 32, C)
    assert out["P_a"].shape == out["P_v"].shape == (2, 32, C)
    assert out["score"].shape == out["w_bar"].shape == (2, 32)
    assert out["video_p"].shape == out["video_pa"].shape == (2, C)
    assert out["z_av"].shape == (2, cfg.n_global, cfg.hidden_dim)
    assert torch.all(out["p_av"][1, 12:] == 0) and torch.all(out["score"][1, 12:] == 0)
    assert torch.all((out["p_av"] >= 0) & (out["p_av"] <= 1))


def _fit_default_input_norm(model, batch) -> None:
    """Weak models standardise their inputs by default (input_norm: auto); fit it as training would."""
    items = [{k: batch[k][i] for k in ("audio", "visual", "mask")} for i in range(len(batch["mask"]))]
    assert fit_input_norm(model, items)


@pytest.mark.parametrize("name", ["clasp", "mil"])
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=C, audio_dim=DA, visual_dim=DV, hidden_dim=16,
                        **({"n_heads": 2, "n_global": 4, "n_local": 2, "n_windows": 5} if name == "clasp" else {}))
    batch = _batch([32, 20, 7], 32)
    _fit_default_input_norm(model, batch)
    loss = model.loss(model(batch), batch)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


@pytest.mark.parametrize("name", ["clasp", "mil"])
def test_padding_content_and_length_do_not_change_valid_outputs(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=C, audio_dim=DA, visual_dim=DV, hidden_dim=16,
                        **({"n_heads": 2, "n_global": 4, "n_local": 2, "n_windows": 5} if name == "clasp" else {}))
    model.eval()
    lengths = [20, 11]
    b1 = _batch(lengths, 24, pad_value=0.0)
    _fit_default_input_norm(model, b1)  # the default standardiser must keep the padding out too
    b2 = _batch(lengths, 24, pad_value=0.0)
    g = torch.Generator().manual_seed(5)
    for k in ("audio", "visual"):  # garbage in the padding
        noise = 100 * torch.randn(b2[k].shape, generator=g)
        b2[k] = torch.where(b2["mask"].unsqueeze(-1), b2[k], noise)
    b3 = {k: torch.cat([v, torch.full((v.shape[0], 16, *v.shape[2:]), 7.0, dtype=v.dtype)], 1)
          if k in ("audio", "visual") else v for k, v in b1.items()}  # 16 more padded steps
    b3["mask"] = torch.cat([b1["mask"], torch.zeros(2, 16, dtype=torch.bool)], 1)
    single = {k: v[1:] for k, v in b1.items()}  # the second video alone, no batch-mates
    with torch.no_grad():
        o1, o2, o3, o4 = model(b1), model(b2), model(b3), model(single)
    for b, L in enumerate(lengths):
        torch.testing.assert_close(o1["p_av"][b, :L], o2["p_av"][b, :L], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(o1["p_av"][b, :L], o3["p_av"][b, :L], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(o1["p_av"][1, :11], o4["p_av"][0, :11], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(o1["video_p"], o2["video_p"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(o1["video_p"], o3["video_p"], atol=1e-5, rtol=1e-5)


def test_empty_video_is_rejected():
    model = CLASP(_small_cfg())
    batch = _batch([10, 0], 12)
    with pytest.raises(ValueError, match=r"videos at batch positions \[1\] have no valid step"):
        model(batch)


@pytest.mark.parametrize("overrides", [
    {"use_gai": False}, {"use_lai": False}, {"anchors_in_atp": False},
    {"anchor_modality": "audio"}, {"anchor_modality": "visual"}, {"meae_on": "transformer"},
])
def test_ablation_switches_run_and_change_the_model(overrides):
    torch.manual_seed(0)
    ref = CLASP(_small_cfg()).eval()
    torch.manual_seed(0)
    model = CLASP(_small_cfg(**overrides)).eval()
    batch = _batch([30, 17], 32)
    with torch.no_grad():
        out, out_ref = model(batch), ref(batch)
    loss = model.loss(out, batch)
    assert torch.isfinite(loss)
    assert not torch.allclose(out["p_av"], out_ref["p_av"])
    if overrides == {"anchors_in_atp": False}:
        assert "anchor_idx_global" not in out and not hasattr(model, "w3")


def test_config_validation_messages():
    with pytest.raises(ValueError, match="at least one of use_gai / use_lai"):
        CLASPConfig(use_gai=False, use_lai=False)
    with pytest.raises(ValueError, match="anchor_modality must be"):
        CLASPConfig(anchor_modality="both_")
    cfg = CLASPConfig()
    assert (cfg.n_global, cfg.n_local, cfg.n_windows, cfg.t_max, cfg.lr, cfg.epochs, cfg.batch_size,
            cfg.threshold) == (10, 4, 14, 224, 1e-4, 40, 16, 0.5)


# ------------------------------------------------------------------ pooling, loss, detection
def test_mil_pool_modes_ignore_padding():
    p = torch.tensor([[[0.2], [0.9], [0.4], [0.6], [1.0]]])  # last step is padding
    mask = torch.tensor([[True, True, True, True, False]])
    assert float(mil_pool(p, mask, "mean")) == pytest.approx((0.2 + 0.9 + 0.4 + 0.6) / 4)
    assert float(mil_pool(p, mask, "max")) == pytest.approx(0.9)
    # top-k: k = ceil(4 / 2) = 2 -> mean(0.9, 0.6)
    assert float(mil_pool(p, mask, "topk", topk_div=2)) == pytest.approx(0.75)
    assert float(mil_pool(p, mask, "topk", topk_div=8)) == pytest.approx(0.9)  # k = 1


def test_detect_keeps_only_confident_classes_and_uses_cell_edges():
    T = 8
    p = torch.zeros(1, T, 3)
    p[0, 2:5, 0] = torch.tensor([0.6, 0.8, 0.7])
    p[0, 6, 0] = 0.9
    p[0, :, 1] = 0.95  # high per step but its video score is below threshold -> dropped
    p[0, 7, 2] = 0.99  # step 7 is padding -> never an event
    video = torch.tensor([[0.9, 0.4, 0.8]])
    mask = torch.arange(T)[None] < 7
    dets = detect_from_probs(p, mask, threshold=0.5, video_probs=video, by_score=True)[0]
    assert sorted(dets) == sorted([(1.5, 4.5, 0, pytest.approx(0.7)), (5.5, 6.5, 0, pytest.approx(0.9))])
    # the paper's rule (decoder: paper; models.localizers.decoding), gating on the training pool
    model = MILBaseline(MILConfig(num_classes=3, gate_pool="train", decoder="paper"))
    out = {"p_av": p, "video_p": video, "mask": mask}
    assert model.detect(out, {}) == [dets]
    # the default gate pools by max, decoupled from the training pool: class 1 (every step 0.95) passes
    default = MILBaseline(MILConfig(num_classes=3, decoder="paper")).detect(out, {})[0]
    assert sorted(default) == sorted(dets + [(-0.5, 6.5, 1, pytest.approx(0.95))])


def test_clasp_loss_is_sum_of_three_bce_terms():
    torch.manual_seed(0)
    model = CLASP(_small_cfg(lambda_uni=0.5))
    batch = _batch([16, 9], 16)
    out = model(batch)
    loss = model.loss(out, batch)
    bce = torch.nn.functional.binary_cross_entropy
    y = batch["labels"]
    expect = bce(out["video_p"], y) + 0.5 * (bce(out["video_pa"], y) + bce(out["video_pv"], y))
    torch.testing.assert_close(loss, expect, atol=1e-6, rtol=1e-5)
    assert set(out["loss_terms"]) == {"av", "a", "v"}


# ------------------------------------------------------------------ registry
def test_registry_build_and_errors():
    m = build_model("clasp", num_classes=3, audio_dim=4, visual_dim=6, hidden_dim=8, n_heads=2)
    assert isinstance(m, CLASP) and m.cfg.num_classes == 3
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        build_model("nope")
    with pytest.raises(TypeError, match=r"unknown config field\(s\) for model 'mil': \['bogus'\]"):
        make_config("mil", bogus=1)
    register("mil_copy", MILConfig, MILBaseline)
    try:
        assert isinstance(build_model("mil_copy", num_classes=2), MILBaseline)
    finally:
        MODELS.pop("mil_copy")
