"""DAVE and AVEL (models/localizers/dave.py, models/localizers/avel.py): shapes, masking, gradient flow, step targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import localizer_batch

from models.localizers.avel import AVEL, AVELConfig, step_targets
from models.localizers.dave import DAVE, DAVEConfig
from models.localizers.tdm import TemporalDependency

C, DA, DV, T = 4, 12, 20, 64


def make_batch(seed: int = 0, lengths: tuple[int, ...] = (64, 41, 17)) -> dict:
    return localizer_batch(seed, lengths, C, DA, DV, T)


def dave(sup: str) -> DAVE:
    torch.manual_seed(0)
    return DAVE(DAVEConfig(num_classes=C, audio_dim=DA, visual_dim=DV, t_max=T, d_model=16, n_heads=2,
                           tdm_dim=4, head_dim=16, dropout=0.0, supervision=sup))


def avel(sup: str) -> AVEL:
    torch.manual_seed(0)
    return AVEL(AVELConfig(num_classes=C, audio_dim=DA, visual_dim=DV, t_max=T, hidden=16, n_regions=4,
                           region_dim=8, h_lstm=8, dropout=0.0, supervision=sup))


def _perturb_padding(b1: dict) -> dict:
    b2 = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in b1.items()}
    pad = ~b2["mask"]
    b2["audio"][pad] = torch.randn(int(pad.sum()), DA) * 50
    b2["visual"][pad] = torch.randn(int(pad.sum()), DV) * 50
    return b2


@pytest.mark.parametrize("sup", ["full", "weak"])
def test_dave_shapes_masking_gradients(sup: str) -> None:
    model = dave(sup).eval()
    b1 = make_batch()
    o1 = model(b1)
    lens = [64, 32, 16, 8, 4, 2]
    assert [x.shape for x in o1["cls_logits"]] == [(3, n, C) for n in lens]
    if sup == "full":
        assert [x.shape for x in o1["offsets"]] == [(3, n, C, 2) for n in lens]
    else:
        assert o1["step_probs"].shape == (3, T, C)
    b2 = _perturb_padding(b1)
    o2 = model(b2)
    for a, b, m in zip(o1["cls_logits"], o2["cls_logits"], o1["level_masks"], strict=True):
        assert torch.allclose(a[m], b[m], atol=1e-5)
    assert torch.allclose(model.loss(o1, b1), model.loss(o2, b2), atol=1e-6)

    model.train()
    out = model(b1)
    model.loss(out, b1).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    zero = [n for n, p in model.named_parameters() if float(p.grad.abs().sum()) == 0.0]
    # only per-level regression scales may legitimately see no gradient: a level without positives (stride 32
    # regresses >= 64 steps) or whose ReLU'd offsets are all inactive at its positives at initialisation
    assert all(n.startswith("heads.scales.") for n in zero), zero
    assert "heads.scales.5.scale" in zero or sup == "weak"


@pytest.mark.parametrize("sup", ["full", "weak"])
def test_avel_shapes_masking_gradients(sup: str) -> None:
    model = avel(sup).eval()
    b1 = make_batch()
    o1 = model(b1)
    assert o1["logits"].shape == (3, T, C) and o1["attention"].shape == (3, T, 4)
    assert torch.allclose(o1["attention"].sum(-1), torch.ones(3, T), atol=1e-5)
    m = b1["mask"]
    assert (o1["step_probs"][~m] == 0).all()
    b2 = _perturb_padding(b1)
    o2 = model(b2)
    assert torch.allclose(o1["logits"][m], o2["logits"][m], atol=1e-5)  # packed LSTMs: padding is invisible
    assert torch.allclose(model.loss(o1, b1), model.loss(o2, b2), atol=1e-6)
    model.train()
    out = model(b1)
    model.loss(out, b1).backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0.0]
    assert bad == []


def test_avel_weak_loss_is_mil_topk_bce() -> None:
    model = avel("weak").eval()
    b = make_batch()
    out = model(b)
    m = b["mask"].float()[..., None]
    k = torch.ceil(b["mask"].sum(1).float() / 8).long()  # top-k mean, k = ceil(T_valid / 8)
    srt = out["step_probs"].masked_fill(m == 0, -1.0).sort(1, descending=True).values
    pooled = torch.stack([srt[i, : k[i]].mean(0) for i in range(len(k))])
    want = torch.nn.functional.binary_cross_entropy(pooled, b["labels"])
    assert torch.allclose(model.loss(out, b), want, atol=1e-6)


def test_step_targets_rasterise_segments() -> None:
    t = step_targets([torch.tensor([[1.5, 4.0, 1.0], [0.0, 1.0, 0.0]])], 6, 2)
    assert t[0, :, 1].tolist() == [0, 0, 1, 1, 0, 0]  # start <= t < end
    assert t[0, :, 0].tolist() == [1, 0, 0, 0, 0, 0]


def test_registered_by_name() -> None:
    import models.localizers.avel  # noqa: F401
    import models.localizers.ccnet  # noqa: F401
    import models.localizers.dave  # noqa: F401
    from models.localizers.registry import build_model

    m = build_model("dave", num_classes=3, audio_dim=8, visual_dim=8, t_max=32, d_model=8, n_heads=2, tdm_dim=2,
                    head_dim=8, supervision="weak")
    assert isinstance(m, DAVE) and m.supervision == "weak"
    assert type(build_model("ccnet", num_classes=3, audio_dim=8, visual_dim=8, t_max=32, d_model=8, n_heads=2,
                            tdm_dim=2, head_dim=8)).__name__ == "CCNet"
    assert isinstance(build_model("avel", num_classes=3, audio_dim=8, visual_dim=8), AVEL)


def test_every_lazily_registered_model_resolves_to_its_class() -> None:
    from models.localizers.registry import get_entry, names

    for name in set(names(None)) - {"clasp", "mil"}:  # the ones imported on first use before the declarations
        cfg_cls, model_cls = get_entry(name)
        assert model_cls.__name__.lower() == name and cfg_cls.__name__.lower() == f"{name}config"


def _padded_tdm(tdm: TemporalDependency, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TemporalDependency.forward as it was before issue #27: both branches over the whole padded batch."""
    B, T, _ = x.shape
    e = F.relu(tdm.expand(x, mask)).view(B, T, tdm.c, tdm.h)
    et = e.permute(0, 2, 1, 3).reshape(B * tdm.c, T, tdm.h)
    t_out = tdm.temporal(et, mask.repeat_interleave(tdm.c, dim=0)).view(B, tdm.c, T, tdm.h).permute(0, 2, 1, 3)
    ec = e.reshape(B * T, tdm.c, tdm.h)
    c_out = tdm.cooccur(ec, torch.ones(B * T, tdm.c, dtype=torch.bool)).view(B, T, tdm.c, tdm.h)
    out = (t_out + c_out) * mask[..., None, None].to(x.dtype)
    return tdm.squeeze(out.reshape(B, T, tdm.c * tdm.h), mask)


@pytest.mark.parametrize("masks", ["prefix", "holes"])
def test_tdm_on_valid_steps_equals_padded_batch(masks: str) -> None:
    """The TDM runs its transformers per video on the valid steps only and its convolutions up to one step
    past the longest video (the issue #27 speed fix): outputs and gradients equal the padded computation,
    also with garbage on padded steps and with masks that are not a prefix."""
    torch.manual_seed(0)
    tdm = TemporalDependency(12, 6, 5, heads=2)
    B, T = 4, 40
    lengths = torch.tensor([33, 7, 20, 1])
    mask = torch.arange(T)[None] < lengths[:, None]
    if masks == "holes":
        mask[0, 3:9] = False
        mask[2, 0] = False
    x = torch.randn(B, T, 12) * 3  # padded steps carry values too
    grads = []
    for fn in (_padded_tdm, TemporalDependency.forward):
        xx = x.clone().requires_grad_(True)
        tdm.zero_grad()
        y = fn(tdm, xx, mask)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads.append((y.detach(), xx.grad.clone(), [p.grad.clone() for p in tdm.parameters()]))
    (y0, gx0, gp0), (y1, gx1, gp1) = grads
    assert y1.shape == y0.shape == (B, T, 12)
    # float32 rounding only: inputs of scale 3 summed over attention and convolution windows differ by ~1e-6
    # between the two evaluation orders on some CPUs (1.4e-6 seen); a padding leak differs by O(1)
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx1, gx0, rtol=1e-5, atol=1e-5)
    for a, b in zip(gp1, gp0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
