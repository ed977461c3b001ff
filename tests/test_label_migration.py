"""Similarity-based uni-modal label migration (EAR Eq. 1-2, S-17..S-21)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.avvp.label_migration import migrate_dataset, migrate_labels


def _reference(feats: np.ndarray, y: np.ndarray, tau: float) -> np.ndarray:
    """Loop implementation written from the supplementary's prose: per segment i and class c,
    average the similarities of the highly similar segments j labelled c; keep original 1s."""
    f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    n, c = y.shape
    out = np.zeros((n, c))
    for i in range(n):
        for k in range(c):
            sims = [float(f[i] @ f[j]) for j in range(n) if y[j, k] > 0 and float(f[i] @ f[j]) >= tau]
            out[i, k] = np.mean(sims) if sims else 0.0
    return np.maximum(out, y)


def test_identical_segment_gets_label_with_confidence_one() -> None:
    rng = np.random.default_rng(0)
    f = rng.standard_normal((4, 16))
    f[2] = f[0] * 3.0  # same direction, different norm: cosine 1
    y = np.zeros((4, 3), np.float32)
    y[0, 1] = 1
    out = migrate_labels(torch.tensor(f), torch.tensor(y), 0.98).numpy()
    assert out[2, 1] == pytest.approx(1.0, abs=1e-6)
    assert out[2, 0] == 0 and out[2, 2] == 0
    assert out[1, 1] == 0 and out[3, 1] == 0  # random directions in 16-D are far below 0.98


def test_confidence_equals_similarity() -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal(32)
    other = rng.standard_normal(32)
    other -= other @ base / (base @ base) * base  # orthogonal to base
    near = base / np.linalg.norm(base) + 0.15 * other / np.linalg.norm(other)
    cos = float(near @ base / np.linalg.norm(near) / np.linalg.norm(base))
    assert 0.95 < cos < 1.0
    f = np.stack([base, near])
    y = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    out = migrate_labels(torch.tensor(f), torch.tensor(y), 0.95).numpy()
    assert out[1, 0] == pytest.approx(cos, abs=1e-6)
    assert out[0].tolist() == [1.0, 0.0]
    # above the threshold nothing migrates
    out_hi = migrate_labels(torch.tensor(f), torch.tensor(y), min(1.0, cos + 1e-3)).numpy()
    assert out_hi[1, 0] == 0.0


def test_duplicates_are_averaged_never_above_one_and_originals_kept() -> None:
    rng = np.random.default_rng(2)
    base = rng.standard_normal(24)
    # 6 near-copies of one direction, 4 of them labelled with class 0 -> raw sum would be ~4
    f = np.stack([base + 0.02 * rng.standard_normal(24) for _ in range(6)] + [rng.standard_normal(24) for _ in range(4)])
    y = np.zeros((10, 3), np.float32)
    y[:4, 0] = 1
    y[7, 2] = 1
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    sim = fn @ fn.T
    assert (((sim >= 0.95) * sim) @ y).max() > 3.0  # Eq. 2 without the post-processing exceeds 1
    out = migrate_labels(torch.tensor(f), torch.tensor(y), 0.95).numpy()
    assert out.max() <= 1.0
    assert np.all(out[y == 1] == 1.0)  # original labels unchanged
    assert 0.95 <= out[4, 0] < 1.0 and 0.95 <= out[5, 0] < 1.0
    np.testing.assert_allclose(out, _reference(f, y, 0.95), atol=1e-6)


def test_matches_loop_reference_on_random_clusters() -> None:
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((5, 20))
    idx = rng.integers(0, 5, 60)
    f = centers[idx] + 0.08 * rng.standard_normal((60, 20))
    y = (rng.random((60, 4)) < 0.2).astype(np.float32)
    for tau in (0.9, 0.98):
        out = migrate_labels(torch.tensor(f), torch.tensor(y), tau).numpy()
        np.testing.assert_allclose(out, _reference(f, y, tau), atol=1e-6)


def test_padding_neither_gives_nor_receives() -> None:
    f = np.ones((3, 4))
    y = np.array([[0, 1], [0, 0], [1, 0]], np.float32)
    valid = torch.tensor([True, True, False])
    out = migrate_labels(torch.tensor(f), torch.tensor(y), 0.9, valid).numpy()
    assert out.tolist() == [[0, 1], [0, 1], [0, 0]]


def test_dataset_batches_videos_and_uses_per_modality_thresholds() -> None:
    rng = np.random.default_rng(4)
    n, t, c = 5, 6, 3
    a = rng.standard_normal((n, t, 8))
    v = rng.standard_normal((n, t, 8))
    a[3, 2] = a[0, 0]  # same batch as video 0 only when batch_videos >= 4
    v[1, 4] = v[0, 0] * (1 + 1e-9)
    y = np.zeros((n, t, c), np.float32)
    y[0, 0, 2] = 1
    mask = np.ones((n, t), bool)
    la, lv = migrate_dataset(a, v, y, mask, batch_videos=2)
    assert la[3, 2, 2] == 0.0  # videos 0 and 3 are in different batches
    assert lv[1, 4, 2] == pytest.approx(1.0, abs=1e-6)
    la, lv = migrate_dataset(a, v, y, mask, batch_videos=4)
    assert la[3, 2, 2] == pytest.approx(1.0, abs=1e-6)
    assert la.shape == (n, t, c) and la.dtype == np.float32


def test_threshold_must_be_in_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"similarity threshold must be in \(0, 1\], got 1.5"):
        migrate_labels(torch.zeros(2, 3), torch.zeros(2, 1), 1.5)
