"""Post-processing: probabilities -> events, the step/seconds round trip, Soft-NMS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from extractors.recipes import get_recipe
from models.data.steps import render_segments, seconds_to_steps
from models.localizers.postprocess import (
    events_to_results,
    probs_to_events,
    probs_to_step_events,
    soft_nms,
    steps_to_seconds,
)
from models.run.metrics import compute_map

R = get_recipe("unav100")


def test_probs_to_events_hand_case():
    p = np.zeros((5, 2))
    p[:, 0] = [0.0, 0.6, 0.8, 0.0, 0.7]
    p[:, 1] = [0.5, 0.4, 0.2, 0.1, 0.1]  # threshold is inclusive (>= 0.5)
    ev = probs_to_step_events(p, 0.5)
    assert ev == [(0.5, 2.5, 0, pytest.approx(0.7)), (3.5, 4.5, 0, pytest.approx(0.7)),
                  (-0.5, 0.5, 1, pytest.approx(0.5))]
    secs = probs_to_events(p, R, 0.5)
    assert secs[0][:2] == pytest.approx((0.64, 1.28))
    assert secs[1][:2] == pytest.approx((1.60, 1.92))
    assert secs[2][:2] == pytest.approx((0.0, 0.64))  # first cell extended to 0 s
    with_dur = probs_to_events(p, R, 0.5, duration=2.5)
    assert with_dur[1][:2] == pytest.approx((1.60, 2.5))  # last valid cell extended to the duration
    # steps beyond valid_len are ignored
    assert probs_to_events(p, R, 0.5, valid_len=4)[1][:2] == pytest.approx((0.0, 0.64))


def test_steps_to_seconds_matches_recipe_centres():
    for t in (0, 3, 17):
        assert steps_to_seconds(t, t, R) == pytest.approx((R.step_time(t), R.step_time(t)))
    assert steps_to_seconds(-3, 2, R, duration=1.0) == (0.0, 1.0)
    assert seconds_to_steps(R.step_time(5), R.step_time(9), R) == pytest.approx((5.0, 9.0))


def _random_grid_gt(rng, n_videos, t_len, n_classes, aligned):
    gt, probs = {}, {}
    duration = (t_len - 1) * R.step_s + R.window_s
    c, st = R.center_offset_s, R.step_s
    for i in range(n_videos):
        vid = f"v{i}"
        gt[vid] = []
        for k in range(n_classes):
            pos = 0
            while True:
                pos += int(rng.integers(1, 12))
                length = int(rng.integers(9, 20))
                if pos + length > t_len or rng.uniform() < 0.3:
                    break
                a, b = pos, pos + length - 1
                if aligned:
                    s = 0.0 if a == 0 else c + (a - 0.5) * st
                    e = duration if b == t_len - 1 else c + (b + 0.5) * st
                else:  # arbitrary boundaries within the cells of a and b
                    s = c + (a - 0.5 + rng.uniform(0, 0.999)) * st
                    e = c + (b - 0.5 + rng.uniform(0.001, 1.0)) * st
                gt[vid].append((s, e, k))
                pos = b + 2
        segs = np.array([(*seconds_to_steps(s, e, R), k) for s, e, k in gt[vid]]).reshape(-1, 3)
        dense = render_segments(segs, t_len, n_classes)
        noise = rng.uniform(0, 0.45, dense.shape)  # below threshold off-event
        probs[vid] = np.where(dense > 0, 0.55 + noise, noise)
    return gt, probs, duration


@pytest.mark.parametrize("t_len", [48, 61])
def test_round_trip_grid_aligned_segments_give_map_one_at_every_threshold(t_len):
    rng = np.random.default_rng(t_len)
    gt, probs, duration = _random_grid_gt(rng, 12, t_len, 3, aligned=True)
    assert sum(len(v) for v in gt.values()) > 20
    pred = {v: probs_to_events(p, R, 0.5, valid_len=t_len, duration=duration) for v, p in probs.items()}
    for v in gt:
        got = sorted((round(s, 6), round(e, 6), c) for s, e, c, _ in pred[v])
        assert got == sorted((round(s, 6), round(e, 6), c) for s, e, c in gt[v])
    res = compute_map(gt, pred, tious=np.linspace(0.1, 0.95, 18))
    assert all(v == pytest.approx(1.0) for v in res["mAP"].values())


def test_round_trip_arbitrary_boundaries_error_at_most_half_a_step():
    rng = np.random.default_rng(3)
    t_len = 64
    gt, probs, duration = _random_grid_gt(rng, 12, t_len, 3, aligned=False)
    pred = {v: probs_to_events(p, R, 0.5, valid_len=t_len, duration=duration) for v, p in probs.items()}
    max_err = 0.0
    for v in gt:
        g = sorted(gt[v], key=lambda x: (x[2], x[0]))
        p = sorted(pred[v], key=lambda x: (x[2], x[0]))
        assert len(g) == len(p)
        for (gs, ge, gc), (ps, pe, pc, _) in zip(g, p, strict=True):
            assert gc == pc
            assert abs(gs - ps) <= R.step_s / 2 + 1e-9 and abs(ge - pe) <= R.step_s / 2 + 1e-9
            max_err = max(max_err, abs(gs - ps), abs(ge - pe))
    assert max_err > 0.1  # boundaries really were off-grid
    # events >= 9 steps long: tIoU >= (9 - 1) / (9 + 1) = 0.8
    res = compute_map(gt, pred)
    assert all(res["mAP"][k] == pytest.approx(1.0) for k in ("0.1", "0.5", "0.8"))


def test_events_to_results_format():
    res = events_to_results({"v": [(0.0, 1.5, 1, 0.25)]}, ["a", "b"])
    assert res["results"] == {"v": [{"segment": [0.0, 1.5], "label": "b", "score": 0.25}]}


# ---------------------------------------------------------------------------------------------
# Soft-NMS


def test_soft_nms_gaussian_hand_values():
    segs = np.array([[0, 10], [0, 10], [5, 15], [0, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([0, 0, 0, 1])
    s, sc, lab, idx = soft_nms(segs, scores, labels, sigma=0.5, min_score=0.0, method="gaussian")
    iou_13 = 5 / 15
    # seg 2 (iou 1/3 with seg 0) is decayed once by the top, then by seg 1's (also 1/3) turn? no:
    # after decay 0.7*exp(-(1/9)/0.5) = 0.5600 > seg 1's 0.8*exp(-1/0.5) = 0.1083, so seg 2 is
    # selected second and decays seg 1 again by exp(-(1/9)/0.5).
    expect = {0: 0.9, 2: 0.7 * math.exp(-(iou_13**2) / 0.5), 3: 0.6,
              1: 0.8 * math.exp(-1 / 0.5) * math.exp(-(iou_13**2) / 0.5)}
    assert list(idx) == [0, 3, 2, 1]
    np.testing.assert_allclose(sc, [expect[i] for i in idx], rtol=1e-5)
    assert list(lab) == [0, 1, 0, 0]
    np.testing.assert_array_equal(s, segs[idx])


def test_soft_nms_hard_linear_min_score_and_cap():
    segs = np.array([[0, 10], [0, 10], [5, 15], [30, 40]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.zeros(4, int)
    _, sc, _, idx = soft_nms(segs, scores, labels, iou_threshold=0.5, method="hard", min_score=1e-3)
    assert sorted(idx.tolist()) == [0, 2, 3]  # the exact duplicate is removed, iou 1/3 < 0.5 kept
    _, sc, _, idx = soft_nms(segs, scores, labels, iou_threshold=0.3, method="linear", min_score=1e-3)
    got = dict(zip(idx.tolist(), sc.tolist(), strict=True))
    assert got[2] == pytest.approx(0.7 * (1 - 1 / 3), rel=1e-5)
    assert 1 not in got  # linear weight 1 - iou = ~0 -> below min_score, dropped
    _, sc, _, idx = soft_nms(segs, scores, labels, method="gaussian", min_score=0.2)
    assert 1 not in idx.tolist()  # 0.8 * e^-2 = 0.108 < 0.2
    _, sc, _, idx = soft_nms(segs, scores, labels, method="gaussian", min_score=0.0, max_seg_num=2)
    assert len(idx) == 2 and idx.tolist() == [0, 3]
    with pytest.raises(ValueError, match="unknown Soft-NMS method"):
        soft_nms(segs, scores, labels, method="cubic")
    e = soft_nms(np.zeros((0, 2)), np.zeros(0), np.zeros(0, int))
    assert e[0].shape == (0, 2) and len(e[3]) == 0


def _literal_reference_softnms(segs, scores, thr, sigma, min_score, method):
    """Scalar transcription of the reference loop's behaviour (select-max with swap, decay,
    drop by swapping in the last element), written independently for the test."""
    x1 = [np.float32(a) for a in segs[:, 0]]
    x2 = [np.float32(b) for b in segs[:, 1]]
    sc = [np.float32(v) for v in scores]
    area = [np.float32(b - a + np.float32(1e-6)) for a, b in zip(x1, x2, strict=True)]
    ind = list(range(len(sc)))
    n = len(sc)
    out_scores = []
    i = 0
    while i < n:
        mpos = i
        for p in range(i + 1, n):
            if sc[mpos] < sc[p]:
                mpos = p
        for arr in (x1, x2, sc, area, ind):
            arr[i], arr[mpos] = arr[mpos], arr[i]
        out_scores.append(sc[i])
        p = i + 1
        while p < n:
            inter = max(np.float32(0), min(x2[i], x2[p]) - max(x1[i], x1[p]))
            ovr = np.float32(inter / (area[i] + area[p] - inter))
            if method == "gaussian":
                w = np.float32(np.exp(-(ovr * ovr) / np.float32(sigma)))
            elif method == "linear":
                w = np.float32(1) - ovr if ovr >= thr else np.float32(1)
            else:
                w = np.float32(0) if ovr >= thr else np.float32(1)
            sc[p] = np.float32(sc[p] * w)
            if sc[p] < min_score:
                for arr in (x1, x2, sc, area, ind):
                    arr[p] = arr[n - 1]
                n -= 1
                p -= 1
            p += 1
        i += 1
    return ind[:n], out_scores[:n]


@pytest.mark.parametrize("method", ["gaussian", "linear", "hard"])
def test_soft_nms_matches_literal_reference_loop_including_tie_order(method):
    rng = np.random.default_rng({"gaussian": 0, "linear": 1, "hard": 2}[method])
    for _ in range(30):
        n = int(rng.integers(1, 40))
        st = rng.integers(0, 30, n).astype(np.float32)
        segs = np.stack([st, st + rng.integers(1, 10, n)], 1).astype(np.float32)
        scores = rng.choice([0.2, 0.5, 0.5, 0.9, 0.05], n).astype(np.float32)  # many ties
        ref_idx, ref_sc = _literal_reference_softnms(segs, scores, 0.3, 0.5, 0.04, method)
        _, sc, _, idx = soft_nms(segs, scores, np.zeros(n, int), sigma=0.5, iou_threshold=0.3,
                                 min_score=0.04, method=method, max_seg_num=0)
        # ours returns the union sorted by score (stable), the reference's selection order is
        # already non-increasing, so a stable sort must give exactly the reference order
        assert idx.tolist() == ref_idx
        np.testing.assert_allclose(sc, ref_sc, rtol=1e-6)


def test_soft_nms_early_stop_keeps_the_reference_prefix():
    rng = np.random.default_rng(11)
    n = 300
    st = rng.uniform(0, 200, n).astype(np.float32)
    segs = np.stack([st, st + rng.uniform(1, 30, n).astype(np.float32)], 1)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    ref_idx, ref_sc = _literal_reference_softnms(segs, scores, 0.7, 0.4, 0.001, "gaussian")
    _, sc, _, idx = soft_nms(segs, scores, np.zeros(n, int), max_seg_num=25)
    assert idx.tolist() == ref_idx[:25]
    np.testing.assert_allclose(sc, ref_sc[:25], rtol=1e-6)


def test_evaluation_draws_a_bounded_number_of_timelines(tmp_path):
    from types import SimpleNamespace

    from extractors.recipes import get_recipe
    from models.data.annotations import Segment, VideoAnnotation
    from models.run.metrics import write_predictions_json
    from models.run.predict import plot_dataset_timelines

    vids = [f"v{i}" for i in (3, 0, 2, 1)]
    anns = {v: VideoAnnotation(v, "test", 10.0, [Segment(1.0, 4.0, "dog")]) for v in vids}
    ds = SimpleNamespace(video_ids=vids, annotations=anns)
    write_predictions_json({v: [(1.2, 3.9, "dog", 0.8)] for v in vids}, tmp_path / "p.json")
    out = tmp_path / "timelines"
    (tmp_path / ".timelines.tmp").mkdir()  # left by an interrupted run
    (tmp_path / ".timelines.tmp" / "stale.png").write_bytes(b"")
    assert plot_dataset_timelines(tmp_path / "p.json", ds, out, get_recipe("unav100"), max_videos=2) == 2
    assert sorted(p.name for p in out.iterdir()) == ["v0.png", "v1.png"]  # the first two in id order
    assert plot_dataset_timelines(tmp_path / "p.json", ds, out, get_recipe("unav100")) == 4
    assert len(list(out.iterdir())) == 4 and not (tmp_path / ".timelines.tmp").exists()
