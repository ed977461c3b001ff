"""CCNet and the shared pyramid parts (models/localizers/ccnet.py, heads.py, targets.py, decoding.py, pyramid.py):
shapes, masking, gradient flow, target assignment and decoding by hand."""

from __future__ import annotations

import pytest
import torch
from conftest import localizer_batch

from models.localizers.ccnet import CCNet, CCNetConfig
from models.localizers.decoding import DecodeConfig, decode_dense
from models.localizers.pooling import mil_pool
from models.localizers.pyramid import fuse_level_probs
from models.localizers.targets import assign_targets, make_points

C, DA, DV, T = 4, 12, 20, 64


def small_cfg(**kw) -> CCNetConfig:
    base = dict(num_classes=C, audio_dim=DA, visual_dim=DV, t_max=T, d_model=16, n_heads=2, tdm_dim=4,
                head_dim=16, dropout=0.0)
    base.update(kw)
    return CCNetConfig(**base)


def make_batch(seed: int = 0, lengths: tuple[int, ...] = (64, 41, 17)) -> dict:
    return localizer_batch(seed, lengths, C, DA, DV, T)


@pytest.mark.parametrize("sup", ["full", "weak"])
def test_output_shapes(sup: str) -> None:
    torch.manual_seed(0)
    model = CCNet(small_cfg(supervision=sup)).eval()
    out = model(make_batch())
    assert len(out["cls_logits"]) == 6  # L_c = 6 pyramid levels, strides 1..32
    assert [x.shape[1] for x in out["cls_logits"]] == [64, 32, 16, 8, 4, 2]
    assert all(x.shape == (3, n, C) for x, n in zip(out["cls_logits"], [64, 32, 16, 8, 4, 2], strict=True))
    assert [m.shape[1] for m in out["level_masks"]] == [64, 32, 16, 8, 4, 2]
    assert out["level_masks"][1][1].sum() == 21  # ceil(41 / 2) valid points at stride 2
    assert len(out["gates"]) == 6 and out["gates"][0][0].shape == (3, 64)
    if sup == "full":
        assert all(o.shape == (3, n, C, 2) for o, n in zip(out["offsets"], [64, 32, 16, 8, 4, 2], strict=True))
        assert all((o >= 0).all() for o in out["offsets"])  # ReLU distances
    else:
        assert "offsets" not in out and not hasattr(model.heads, "reg_out")
        assert out["step_probs"].shape == (3, T, C)


@pytest.mark.parametrize("sup", ["full", "weak"])
def test_padding_does_not_affect_valid_outputs_or_loss(sup: str) -> None:
    torch.manual_seed(0)
    model = CCNet(small_cfg(supervision=sup)).eval()
    b1 = make_batch()
    b2 = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in b1.items()}
    pad = ~b2["mask"]
    b2["audio"][pad] = torch.randn(int(pad.sum()), DA) * 50
    b2["visual"][pad] = torch.randn(int(pad.sum()), DV) * 50
    o1, o2 = model(b1), model(b2)
    for lg1, lg2, m in zip(o1["cls_logits"], o2["cls_logits"], o1["level_masks"], strict=True):
        assert torch.allclose(lg1[m], lg2[m], atol=1e-5)
    if sup == "full":
        for a, b, m in zip(o1["offsets"], o2["offsets"], o1["level_masks"], strict=True):
            assert torch.allclose(a[m], b[m], atol=1e-5)
    l1, l2 = model.loss(o1, b1), model.loss(o2, b2)
    assert torch.allclose(l1, l2, atol=1e-6)
    # and the valid outputs do depend on valid inputs (the check above is not vacuous)
    b3 = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in b1.items()}
    b3["audio"][1, 5] += 3.0
    o3 = model(b3)
    assert not torch.allclose(o3["cls_logits"][0][1, :41], o1["cls_logits"][0][1, :41], atol=1e-4)


@pytest.mark.parametrize("sup", ["full", "weak"])
def test_every_parameter_gets_a_gradient(sup: str) -> None:
    torch.manual_seed(0)
    model = CCNet(small_cfg(supervision=sup)).train()
    batch = make_batch()
    out = model(batch)
    loss = model.loss(out, batch)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    zero = [n for n, p in model.named_parameters() if float(p.grad.abs().sum()) == 0.0]
    # only per-level regression scales may legitimately see no gradient: a level without positives (stride 32
    # regresses >= 64 steps) or whose ReLU'd offsets are all inactive at its positives at initialisation
    assert all(n.startswith("heads.scales.") for n in zero), zero
    assert "heads.scales.5.scale" in zero or sup == "weak"


def test_weak_mode_needs_no_segments_and_full_mode_needs_them() -> None:
    torch.manual_seed(0)
    batch = make_batch()
    del batch["segments"]
    weak = CCNet(small_cfg(supervision="weak"))
    assert torch.isfinite(weak.loss(weak(batch), batch))
    full = CCNet(small_cfg(supervision="full"))
    with pytest.raises(ValueError, match="full supervision needs batch\\['segments'\\]"):
        full.loss(full(batch), batch)
    with pytest.raises(ValueError, match="supervision must be"):
        CCNet(small_cfg(supervision="semi"))


def test_longer_than_t_max_inputs_run() -> None:
    """Inference on videos longer than t_max (C2F's temporal W_u is resampled)."""
    torch.manual_seed(0)
    model = CCNet(small_cfg()).eval()
    T2 = 100
    batch = {"audio": torch.randn(1, T2, DA), "visual": torch.randn(1, T2, DV),
             "mask": torch.ones(1, T2, dtype=torch.bool)}
    out = model(batch)
    assert out["cls_logits"][0].shape == (1, 128, C)  # padded to a multiple of the largest stride
    assert int(out["level_masks"][0].sum()) == T2


# ----------------------------------------------------------------------------- shared heads logic
def test_points_and_assignment_by_hand() -> None:
    pts = torch.cat(make_points([8, 4], ((0.0, 4.0), (4.0, 100.0))), 0)
    assert pts[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6]
    assert pts[:, 3].tolist() == [1.0] * 8 + [2.0] * 4
    seg = torch.tensor([[2.0, 5.0, 1.0], [3.5, 4.5, 2.0], [0.5, 7.5, 1.0]])
    cls_t, reg_t = assign_targets(pts, seg, num_classes=3, center_sample_radius=None)
    # level 0 (range 0..4): class 1 <- [2, 5] at t = 3, 4 (t = 2, 5 are on the boundary: not inside)
    # and [0.5, 7.5] at t = 4 (max distance 3.5 <= 4) but [2, 5] is shorter there; at t = 1..3, 5..7 the
    # long segment's max distance exceeds 4 except t = 4 -> t=3: [2,5] (dist 1, 2)
    pos1 = torch.nonzero(cls_t[:8, 1]).flatten().tolist()
    assert pos1 == [3, 4]
    assert reg_t[3, 1].tolist() == [1.0, 2.0] and reg_t[4, 1].tolist() == [2.0, 1.0]
    # class 2 <- [3.5, 4.5] at t = 4 only; class-aware: t = 4 is positive for classes 1 and 2
    assert torch.nonzero(cls_t[:8, 2]).flatten().tolist() == [4]
    assert reg_t[4, 2].tolist() == [0.5, 0.5]
    # level 1 (stride 2, range 4..100): [0.5, 7.5] at t = 2 (max 5.5), 4 (max 3.5 < 4: no), 6 (max 5.5)
    assert torch.nonzero(cls_t[8:, 1]).flatten().tolist() == [1, 3]
    assert reg_t[9, 1].tolist() == [0.75, 2.75]  # (2 - 0.5, 7.5 - 2) / 2
    assert cls_t[8:, 2].sum() == 0
    # centre sampling with a small radius keeps only points near the centre
    cls_c, _ = assign_targets(pts, seg[:1], num_classes=3, center_sample_radius=0.6)
    assert torch.nonzero(cls_c[:8, 1]).flatten().tolist() == [3, 4]
    cls_c, _ = assign_targets(pts, seg[:1], num_classes=3, center_sample_radius=0.4)
    assert cls_c.sum() == 0  # centre box (3.1, 3.9) holds no integer point
    with pytest.raises(ValueError, match="out of range"):
        assign_targets(pts, torch.tensor([[0.0, 1.0, 3.0]]), num_classes=3)


def test_decode_by_hand() -> None:
    """One confident point per level -> its segment ``t -/+ offsets * stride`` after Soft-NMS."""
    B, C2 = 1, 3
    logits = [torch.full((B, 8, C2), -20.0), torch.full((B, 4, C2), -20.0)]
    offsets = [torch.zeros(B, 8, C2, 2), torch.zeros(B, 4, C2, 2)]
    logits[0][0, 4, 2] = 3.0
    offsets[0][0, 4, 2] = torch.tensor([1.5, 2.5])
    logits[1][0, 3, 0] = 1.0
    offsets[1][0, 3, 0] = torch.tensor([1.0, 0.5])  # t = 6, stride 2 -> [4, 7]
    out = {"cls_logits": logits, "offsets": offsets,
           "level_masks": [torch.ones(B, 8, dtype=torch.bool), torch.ones(B, 4, dtype=torch.bool)]}
    dets = decode_dense(out, DecodeConfig(pre_nms_thresh=0.01))
    assert len(dets) == 1 and len(dets[0]) == 2
    (s0, e0, c0, p0), (s1, e1, c1, p1) = dets[0]
    assert (s0, e0, c0) == (2.5, 6.5, 2) and p0 == pytest.approx(float(torch.sigmoid(torch.tensor(3.0))), rel=1e-6)
    assert (s1, e1, c1) == (4.0, 7.0, 0) and p1 == pytest.approx(float(torch.sigmoid(torch.tensor(1.0))), rel=1e-6)


def test_mil_pool_and_level_fusion_by_hand() -> None:
    p = torch.tensor([[[0.1], [0.9], [0.5], [0.7]]])
    m = torch.tensor([[True, True, True, False]])
    assert mil_pool(p, m, "mean").item() == pytest.approx(0.5)
    assert mil_pool(p, m, "max").item() == pytest.approx(0.9)
    assert mil_pool(p, m, "topk", topk_div=2).item() == pytest.approx((0.9 + 0.5) / 2)  # k = ceil(3/2)
    lv0 = torch.tensor([[[0.2], [0.4], [0.6], [0.8]]])
    lv1 = torch.tensor([[[1.0], [0.0]]])
    fused = fuse_level_probs([lv0, lv1], 4)
    assert fused.flatten().tolist() == pytest.approx([0.6, 0.7, 0.3, 0.4])


def test_weak_loss_is_mean_of_per_level_topk_bce() -> None:
    torch.manual_seed(0)
    model = CCNet(small_cfg(supervision="weak")).eval()
    b = make_batch()
    out = model(b)
    want = []
    for lg, m in zip(out["cls_logits"], out["level_masks"], strict=True):
        p = torch.sigmoid(lg)
        pooled = []
        for i in range(p.shape[0]):
            n = int(m[i].sum())
            k = -(-n // 8)
            pooled.append(p[i, :n].sort(0, descending=True).values[:k].mean(0))
        want.append(torch.nn.functional.binary_cross_entropy(torch.stack(pooled), b["labels"]))
    assert torch.allclose(model.loss(out, b), torch.stack(want).mean(), atol=1e-6)
    # inference reads the stride-1 level
    assert torch.allclose(out["step_probs"], torch.sigmoid(out["cls_logits"][0]), atol=1e-7)


def test_weak_gate_is_decoupled_from_the_training_pool() -> None:
    """A short event predicted at 0.95 on 2 of 32 steps: its top-k training pool (k = 4) is below 0.5,
    so gating on the training pool drops it; the default max gate keeps it (models.localizers.pooling)."""
    T = 32
    p = torch.full((1, T, 3), 0.01)
    p[0, 10:12, 2] = 0.95
    mask = torch.ones(1, T, dtype=torch.bool)
    out, batch = {"step_probs": p}, {"mask": mask}
    assert mil_pool(p, mask, "topk")[0, 2] < 0.5
    paper = {"supervision": "weak", "decoder": "paper"}  # the paper's rule (models.localizers.decoding)
    kept = CCNet(small_cfg(**paper)).detect(out, batch)[0]
    assert kept == [(9.5, 11.5, 2, pytest.approx(0.95))]
    assert CCNet(small_cfg(**paper, gate_pool="train")).detect(out, batch) == [[]]
    assert len(CCNet(small_cfg(**paper, gate_pool="none")).detect(out, batch)[0]) == 1


def test_class_head_prior_follows_the_supervision() -> None:
    """The focal loss's RetinaNet prior (0.01) for full supervision, a zero bias (0.5) for the weak MIL BCE,
    an explicit ``cls_prior_prob`` over both, for CCNet and DAVE alike (models.localizers.pyramid.class_head_prior)."""
    import math

    from models.localizers.dave import DAVE, DAVEConfig

    def out_bias(model: torch.nn.Module) -> torch.Tensor:
        return model.heads.cls_out.conv.bias.detach()

    for build, cfg_cls in ((CCNet, CCNetConfig), (DAVE, DAVEConfig)):
        base = dict(num_classes=C, audio_dim=DA, visual_dim=DV, t_max=T, d_model=16, n_heads=2, tdm_dim=4,
                    head_dim=16)
        full = out_bias(build(cfg_cls(**base, supervision="full")))
        torch.testing.assert_close(full, torch.full((C,), -math.log(99.0)))
        assert out_bias(build(cfg_cls(**base, supervision="weak"))).abs().max() == 0.0
        weak_set = out_bias(build(cfg_cls(**base, supervision="weak", cls_prior_prob=0.01)))
        torch.testing.assert_close(weak_set, full)


def test_pyramid_configs_decode_with_the_decode_defaults() -> None:
    """CCNet and DAVE inherit DecodeConfig's fields, so their defaults are its defaults (one place)."""
    from models.localizers.dave import DAVEConfig
    from models.localizers.decoding import decode_config

    assert decode_config(CCNetConfig()) == DecodeConfig() == decode_config(DAVEConfig())
    assert decode_config(CCNetConfig(nms_sigma=0.9)).nms_sigma == 0.9
