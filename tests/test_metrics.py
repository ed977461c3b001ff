"""mAP@tIoU: hand cases, reference-specific rules, and parity with a naive re-implementation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.run.metrics import (
    average_precision,
    compute_map,
    interpolated_prec_rec,
    load_predictions_json,
    segment_iou,
    write_predictions_json,
)

GT = {
    "v1": [(0.0, 10.0, "dog"), (20.0, 30.0, "dog"), (5.0, 15.0, "car")],
    "v2": [(2.0, 8.0, "car")],
}


def test_perfect_predictions_score_one_at_every_threshold():
    pred = {v: [(s, e, lab, 1.0) for s, e, lab in segs] for v, segs in GT.items()}
    res = compute_map(GT, pred)
    assert res["num_classes"] == 2
    assert all(v == pytest.approx(1.0) for v in res["mAP"].values())
    assert res["avg"] == pytest.approx(1.0)
    assert set(res["reported"]) == {"0.5", "0.6", "0.7", "0.8", "0.9", "avg"}
    assert len(res["mAP"]) == 9


def test_duplicate_detection_is_a_false_positive():
    pred = {"v1": [(0.0, 10.0, "dog", 0.9), (0.0, 10.0, "dog", 0.8), (20.0, 30.0, "dog", 0.7)]}
    res = compute_map({"v1": GT["v1"][:2]}, pred)
    # TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 0.5*1 + 0.5*2/3
    assert res["per_class"]["dog"][4] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_class_without_predictions_has_ap_zero():
    pred = {"v1": [(0.0, 10.0, "dog", 0.9), (20.0, 30.0, "dog", 0.8)]}
    res = compute_map(GT, pred)
    assert res["per_class"]["car"] == [0.0] * 9
    assert res["per_class"]["dog"][0] == pytest.approx(1.0)
    assert res["avg"] == pytest.approx(0.5)


def test_predictions_for_absent_classes_are_ignored():
    pred = {"v1": [(0.0, 10.0, "dog", 0.9), (20.0, 30.0, "dog", 0.8), (5.0, 15.0, "car", 0.5)],
            "v2": [(2.0, 8.0, "car", 0.4)]}
    base = compute_map(GT, pred)
    noisy = {k: list(v) for k, v in pred.items()}
    noisy["v1"] += [(0.0, 10.0, "cat", 0.99), (1.0, 2.0, "cat", 0.98)]
    noisy["v3"] = [(0.0, 1.0, "bird", 1.0)]
    assert compute_map(GT, noisy)["mAP"] == base["mAP"]
    assert base["avg"] == pytest.approx(1.0)


def test_prediction_in_video_without_gt_is_false_positive():
    pred = {"v1": [(0.0, 10.0, "dog", 0.5), (20.0, 30.0, "dog", 0.4)], "zzz": [(0.0, 10.0, "dog", 0.9)]}
    res = compute_map({"v1": GT["v1"][:2]}, pred)
    # FP, TP, TP: precision envelope 2/3 at both recall steps
    assert res["per_class"]["dog"][0] == pytest.approx(2 / 3)


def test_score_ties_follow_reference_argsort_order():
    # np.argsort(scores)[::-1] puts the *later* of two tied predictions first
    gt = {"v": [(0.0, 10.0, "a")]}
    fp_then_tp = {"v": [(50.0, 60.0, "a", 0.5), (0.0, 10.0, "a", 0.5)]}
    tp_then_fp = {"v": [(0.0, 10.0, "a", 0.5), (50.0, 60.0, "a", 0.5)]}
    assert compute_map(gt, fp_then_tp)["avg"] == pytest.approx(1.0)
    assert compute_map(gt, tp_then_fp)["avg"] == pytest.approx(0.5)


def test_duplicate_ground_truth_is_removed_like_unav():
    gt = {"v": [(0.0, 10.0, "a"), (0.0005, 10.0, "a"), (20.0, 30.0, "a")]}
    pred = {"v": [(0.0, 10.0, "a", 0.9), (20.0, 30.0, "a", 0.8)]}
    assert compute_map(gt, pred)["avg"] == pytest.approx(1.0)
    assert compute_map(gt, pred, dedup_gt=False)["avg"] == pytest.approx(2 / 3)


def test_tiou_threshold_boundaries():
    gt = {"v": [(0.0, 10.0, "a")]}
    pred = {"v": [(0.0, 6.0, "a", 1.0)]}  # tIoU = 0.6 exactly
    m = compute_map(gt, pred)["mAP"]
    assert m["0.6"] == pytest.approx(1.0) and m["0.7"] == 0.0 and m["0.5"] == pytest.approx(1.0)


def test_interpolated_prec_rec_hand_value():
    assert interpolated_prec_rec(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(
        0.5 + 0.5 * 2 / 3)
    assert interpolated_prec_rec(np.array([0.5, 1.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_activitynet_json_inputs_and_file_round_trip(tmp_path):
    gt_json = {"version": "VERSION 1.3", "taxonomy": [], "database": {
        "v1": {"subset": "validation", "duration": 40.0, "url": "", "resolution": "",
               "annotations": [{"segment": [0.0, 10.0], "label": "dog"}]},
        "v9": {"subset": "training", "duration": 40.0, "annotations": [{"segment": [0, 5], "label": "cow"}]}}}
    preds = {"v1": [(0.0, 10.0, "dog", 0.7), (11.0, 12.0, "dog", 0.1)]}
    path = tmp_path / "pred.json"
    write_predictions_json(preds, path)
    doc = json.loads(path.read_text())
    assert doc["results"]["v1"][0] == {"segment": [0.0, 10.0], "label": "dog", "score": 0.7}
    loaded = load_predictions_json(path)
    assert loaded == preds
    res = compute_map(gt_json, doc, subset="validation")
    assert res["num_classes"] == 1 and res["avg"] == pytest.approx(1.0)
    assert compute_map(gt_json, doc)["num_classes"] == 2


# ---------------------------------------------------------------------------------------------
# naive independent implementation


def _naive_map(gt, pred, tious):
    classes = sorted({lab for segs in gt.values() for *_, lab in segs})
    aps = np.zeros((len(tious), len(classes)))
    for ci, c in enumerate(classes):
        g = [(v, s, e) for v, segs in gt.items() for s, e, lab in segs if lab == c]
        p = [(sc, v, s, e) for v, lst in pred.items() for s, e, lab, sc in lst if lab == c]
        p.sort(key=lambda x: -x[0])
        for ti, thr in enumerate(tious):
            used = [False] * len(g)
            hits = []
            for _sc, v, s, e in p:
                best, best_iou = -1, -1.0
                for j, (gv, gs, ge) in enumerate(g):
                    if gv != v or used[j]:
                        continue
                    inter = max(0.0, min(e, ge) - max(s, gs))
                    iou = inter / ((e - s) + (ge - gs) - inter)
                    if iou >= thr and iou > best_iou:
                        best, best_iou = j, iou
                if best >= 0:
                    used[best] = True
                hits.append(best >= 0)
            # all-points interpolated AP written directly from its definition
            ap = 0.0
            n_tp = 0
            for r, h in enumerate(hits):
                if h:
                    n_tp += 1
                    best_prec = max(sum(hits[:k + 1]) / (k + 1) for k in range(r, len(hits)))
                    ap += best_prec / len(g)
            aps[ti, ci] = ap
    return aps.mean(axis=1)


def test_agrees_with_naive_implementation_on_random_predictions():
    rng = np.random.default_rng(1234)
    labels = ["a", "b", "c", "d"]
    gt, pred = {}, {}
    for i in range(60):
        v = f"vid{i}"
        n = rng.integers(1, 5)
        gt[v] = []
        for _ in range(n):
            s = float(rng.uniform(0, 50))
            gt[v].append((s, s + float(rng.uniform(1, 20)), labels[rng.integers(4)]))
        pred[v] = []
        for s, e, lab in gt[v]:
            for _ in range(rng.integers(0, 4)):  # jittered detections, several per GT
                js, je = s + rng.normal(0, 2), e + rng.normal(0, 2)
                if je > js:
                    pred[v].append((float(js), float(je), lab, float(rng.uniform())))
        for _ in range(rng.integers(0, 5)):  # background false positives
            s = float(rng.uniform(0, 60))
            pred[v].append((s, s + float(rng.uniform(0.5, 15)), labels[rng.integers(4)], float(rng.uniform())))
    pred["not_in_gt"] = [(0.0, 5.0, "a", 0.95), (1.0, 4.0, "b", 0.2)]
    n_pred = sum(len(v) for v in pred.values())
    assert n_pred > 300
    tious = np.linspace(0.1, 0.9, 9)
    ours = compute_map(gt, pred, tious)
    naive = _naive_map(gt, pred, tious)
    np.testing.assert_allclose([ours["mAP"][k] for k in ours["mAP"]], naive, atol=1e-9, rtol=0)
    assert 0.05 < ours["avg"] < 0.95  # a non-degenerate regime


def test_many_random_trials_agree():
    rng = np.random.default_rng(7)
    total = 0
    for _ in range(25):
        gt = {f"v{i}": [] for i in range(8)}
        pred = {}
        for v in gt:
            for _ in range(rng.integers(1, 4)):
                s = float(rng.uniform(0, 20))
                gt[v].append((s, s + float(rng.uniform(0.5, 8)), int(rng.integers(3))))
            pred[v] = []
            for _ in range(rng.integers(0, 12)):
                s = float(rng.uniform(0, 25))
                pred[v].append((s, s + float(rng.uniform(0.3, 8)), int(rng.integers(3)), float(rng.uniform())))
            total += len(pred[v])
        tious = np.linspace(0.1, 0.9, 9)
        ours = compute_map(gt, pred, tious)
        np.testing.assert_allclose(list(ours["mAP"].values()), _naive_map(gt, pred, tious), atol=1e-9, rtol=0)
    assert total > 1000


def test_average_precision_direct_and_segment_iou():
    gt = {"v": np.array([[0.0, 10.0], [20.0, 30.0]])}
    ap = average_precision(gt, ["v", "v"], np.array([[0.0, 10.0], [21.0, 30.0]]), np.array([0.9, 0.8]),
                           [0.5, 0.95])
    assert ap[0] == pytest.approx(1.0) and ap[1] == pytest.approx(0.5)
    np.testing.assert_allclose(segment_iou(np.array([0.0, 10.0]), np.array([[5.0, 15.0], [20.0, 30.0]])),
                               [1 / 3, 0.0])
