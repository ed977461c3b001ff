"""AVVP F-scores: each of the ten HAN numbers on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.avvp.metrics import KEYS, avvp_scores, extract_events, video_scores


def _m(c, runs, t=10):
    x = np.zeros((c, t))
    for k, a, b in runs:
        x[k, a:b] = 1
    return x


def _video1():
    gt_a = _m(2, [(0, 0, 5)])
    gt_v = _m(2, [(0, 2, 7), (1, 7, 10)])
    pred_a = _m(2, [(0, 0, 4), (1, 8, 10)])
    pred_v = _m(2, [(0, 2, 7)])
    return pred_a, pred_v, gt_a, gt_v


# hand-computed (see comments) for video 1
V1 = {
    # audio: class0 TP4 FP0 FN1 -> 8/9; class1 TP0 FP2 -> 0
    "seg_a": (8 / 9 + 0) / 2,
    # visual: class0 perfect -> 1; class1 FN3 -> 0
    "seg_v": 0.5,
    # av: GT [2,5) class0, pred [2,4) -> TP2 FN1 -> 4/5; class1 empty -> skipped
    "seg_av": 0.8,
    # pooled a+v: class0 TP9 FN1 -> 18/19; class1 TP0 FP2 FN3 -> 0
    "seg_event": (18 / 19) / 2,
    # events: audio class0 IoU 4/5 -> TP; class1 FP -> (1 + 0)/2
    "evt_a": 0.5,
    "evt_v": 0.5,
    "evt_av": 1.0,  # [2,4) vs [2,5): IoU 2/3 >= 0.5
    # pooled: class0 TP2 -> 1; class1 FP1 FN1 -> 0
    "evt_event": 0.5,
}


def test_video_level_numbers_hand_computed():
    got = video_scores(*_video1())
    for k, v in V1.items():
        assert got[k] == pytest.approx(v), k


def test_ten_numbers_averaged_over_videos_with_all_negative_video():
    p1 = _video1()
    empty = np.zeros((2, 10))
    res = avvp_scores([p1[0], empty], [p1[1], empty], [p1[2], empty], [p1[3], empty])
    assert tuple(res) == KEYS
    for k, v in V1.items():
        assert res[k] == pytest.approx((v + 1.0) / 2), k  # empty video scores 1.0 (all true negatives)
    assert res["seg_type"] == pytest.approx((res["seg_a"] + res["seg_v"] + res["seg_av"]) / 3)
    assert res["evt_type"] == pytest.approx((res["evt_a"] + res["evt_v"] + res["evt_av"]) / 3)
    assert res["seg_type"] == pytest.approx(((4 / 9 + 1) / 2 + 0.75 + 0.9) / 3)
    assert res["evt_type"] == pytest.approx((0.75 + 0.75 + 1.0) / 3)


def test_event_level_uses_iou_half_not_a_tolerance():
    gt = _m(1, [(0, 0, 5)])
    short = _m(1, [(0, 0, 2)])  # IoU 2/5 < 0.5 -> FP and FN, although the onset is exact
    r = video_scores(short, np.zeros((1, 10)), gt, np.zeros((1, 10)))
    assert r["evt_a"] == 0.0
    assert r["seg_a"] == pytest.approx(4 / 7)  # TP2 FN3
    split = _m(1, [(0, 0, 2), (0, 3, 5)])  # two runs, IoU 2/5 each
    assert video_scores(split, np.zeros((1, 10)), gt, np.zeros((1, 10)))["evt_a"] == 0.0
    half = _m(1, [(0, 0, 3)])  # IoU 3/5 -> TP
    assert video_scores(half, np.zeros((1, 10)), gt, np.zeros((1, 10)))["evt_a"] == 1.0
    # offset by one segment at both ends: IoU 4/6 -> still a match
    shifted = _m(1, [(0, 1, 6)])
    assert video_scores(shifted, np.zeros((1, 10)), gt, np.zeros((1, 10)))["evt_a"] == 1.0


def test_extract_events_and_input_checks():
    assert extract_events(np.array([1, 1, 0, 1, 0, 0, 0, 0, 1, 1])) == [(0, 2), (3, 4), (8, 10)]
    assert extract_events(np.zeros(10)) == []
    with pytest.raises(ValueError):
        avvp_scores([], [], [], [])


def test_stacked_arrays_accepted_and_perfect_prediction_scores_one():
    rng = np.random.default_rng(0)
    ga = (rng.uniform(size=(5, 3, 10)) > 0.6).astype(float)
    gv = (rng.uniform(size=(5, 3, 10)) > 0.6).astype(float)
    res = avvp_scores(ga, gv, ga, gv)
    assert all(v == pytest.approx(1.0) for v in res.values())
    worse = avvp_scores(gv, ga, ga, gv)
    assert all(worse[k] < 1.0 for k in ("seg_a", "seg_v", "evt_a", "evt_v"))
