"""Focal and GIoU losses against hand computations (models/localizers/losses.py)."""

from __future__ import annotations

import math

import pytest
import torch

from models.localizers.losses import giou_loss_1d, masked_mil_bce, sigmoid_focal_loss


def _focal_by_hand(x: float, y: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    p = 1.0 / (1.0 + math.exp(-x))
    if y == 1.0:
        return -alpha * (1 - p) ** gamma * math.log(p)
    return -(1 - alpha) * p**gamma * math.log(1 - p)


def test_focal_matches_hand_computation() -> None:
    logits = torch.tensor([0.5, -1.2, 3.0, -4.0], dtype=torch.float64)
    targets = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    got = sigmoid_focal_loss(logits, targets, reduction="none")
    want = [_focal_by_hand(x, y) for x, y in zip(logits.tolist(), targets.tolist(), strict=True)]
    assert got.tolist() == pytest.approx(want, rel=1e-10)
    assert float(sigmoid_focal_loss(logits, targets, reduction="sum")) == pytest.approx(sum(want), rel=1e-10)
    # gamma = 0, alpha disabled -> plain BCE
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    assert torch.allclose(sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0), bce)


def test_focal_is_stable_for_large_logits() -> None:
    loss = sigmoid_focal_loss(torch.tensor([-60.0, 60.0]), torch.tensor([1.0, 0.0]), reduction="none")
    assert torch.isfinite(loss).all() and (loss > 10).all()


def test_giou_zero_for_identical_segments() -> None:
    seg = torch.tensor([[1.0, 4.0], [0.0, 0.5]])
    assert torch.allclose(giou_loss_1d(seg, seg, mode="segments"), torch.zeros(2), atol=1e-7)
    off = torch.tensor([[2.0, 3.0], [0.1, 7.0]])
    assert torch.allclose(giou_loss_1d(off, off, mode="offsets"), torch.zeros(2), atol=1e-7)


def test_giou_hand_computed_pairs() -> None:
    # [1, 3] vs [2, 5]: inter 1, union 4, enclosing 4 -> GIoU 0.25, loss 0.75
    # [0, 1] vs [2, 3]: inter 0, union 2, enclosing 3 -> GIoU -1/3, loss 4/3
    pred = torch.tensor([[1.0, 3.0], [0.0, 1.0]])
    tgt = torch.tensor([[2.0, 5.0], [2.0, 3.0]])
    assert giou_loss_1d(pred, tgt, mode="segments").tolist() == pytest.approx([0.75, 4.0 / 3.0], rel=1e-6)
    # the same pairs as offsets from anchor t = 2.5: (t - s, e - t)
    t = 2.5
    to_off = lambda s: torch.stack([t - s[:, 0], s[:, 1] - t], 1)  # noqa: E731
    # the disjoint pair has a negative distance in offset form; only the overlapping pair is valid there
    got = giou_loss_1d(to_off(pred[:1]), to_off(tgt[:1]), mode="offsets")
    assert got.tolist() == pytest.approx([0.75], rel=1e-6)


def test_giou_gradient_flows_for_disjoint_segments() -> None:
    pred = torch.tensor([[0.0, 1.0]], requires_grad=True)
    giou_loss_1d(pred, torch.tensor([[2.0, 3.0]]), mode="segments", reduction="sum").backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_giou_rejects_bad_shapes_and_modes() -> None:
    with pytest.raises(ValueError, match="must both be"):
        giou_loss_1d(torch.zeros(3, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="unknown mode"):
        giou_loss_1d(torch.zeros(1, 2), torch.zeros(1, 2), mode="boxes")


def test_mil_bce_matches_formula() -> None:
    p = torch.tensor([[0.9, 0.2]])
    y = torch.tensor([[1.0, 0.0]])
    want = -(math.log(0.9) + math.log(0.8)) / 2
    assert float(masked_mil_bce(p, y)) == pytest.approx(want, rel=1e-6)
