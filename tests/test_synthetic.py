"""Planted-event benchmark: layout, ground-truth alignment, distractors, learnability."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from extractors.recipes import get_recipe
from models.data.dataset import FeatureDataset
from models.data.features import load_video_features
from models.data.steps import covered_steps, seconds_to_steps
from models.data.synthetic import (
    PlantedConfig,
    make_planted,
    make_planted_arrays,
    make_planted_avvp,
    planted_prototypes,
)
from models.data.unav import read_unav
from models.localizers.postprocess import probs_to_events
from models.run.metrics import compute_map

R = get_recipe("unav100")
SMALL = dict(num_classes=4, n_videos=30, t_len=(20, 30), audio_dim=16, visual_dim=24)


def test_make_planted_layout_and_store(tmp_path):
    cfg = PlantedConfig(**SMALL)
    store, anns, classes = make_planted(cfg, tmp_path, R)
    assert classes == ["event_00", "event_01", "event_02", "event_03"]
    assert len(anns) == 30 and len(store) == 30
    assert read_unav(tmp_path / "annotations.json") == anns
    db = json.loads((tmp_path / "annotations.json").read_text())["database"]
    seg0 = next(iter(db.values()))["annotations"][0]
    assert classes[seg0["label_id"]] == seg0["label"]
    counts = {s: sum(a.subset == s for a in anns.values()) for s in ("train", "validation", "test")}
    assert counts == {"train": 18, "validation": 6, "test": 6}
    for vid, ann in anns.items():
        a, v = load_video_features(vid, tmp_path)  # our layout on disk
        assert a.shape[1] == 16 and v.shape[1] == 24 and 20 <= len(a) <= 30
        sa, sv = store.get(vid)
        np.testing.assert_array_equal(sa, a.astype(np.float16))
        assert ann.duration == pytest.approx((len(a) - 1) * R.step_s + R.window_s)
        assert 1 <= len(ann.segments) <= 3
        assert all(0 <= s.start < s.end <= ann.duration + 1e-9 for s in ann.segments)
    ds = FeatureDataset(store, anns, classes, R, subset="test", t_max=32)
    assert len(ds) == 6 and ds[0]["audio"].shape == (32, 16)
    # deterministic: same seed -> identical data
    f2, a2, _ = make_planted_arrays(cfg, R)
    assert a2 == anns
    np.testing.assert_array_equal(f2["planted_00000"][1], load_video_features("planted_00000", tmp_path)[1])


def test_ground_truth_matches_planted_steps_and_distractors_are_unlabelled():
    cfg = PlantedConfig(**{**SMALL, "n_videos": 40}, noise=0.0, scene=0.0, signal=1.0, ramp=0)
    feats, anns, classes = make_planted_arrays(cfg, R)
    pa, pv = planted_prototypes(cfg)
    n_dist_a = n_dist_v = 0
    for vid, ann in anns.items():
        a, v = feats[vid]
        za, zv = a @ pa.T, v @ pv.T  # noiseless: projections are the event envelopes (+ crosstalk)
        gt = np.zeros_like(za, dtype=bool)
        for s in ann.segments:
            lo, hi = covered_steps(*seconds_to_steps(s.start, s.end, R), len(a))
            gt[lo:hi, classes.index(s.label)] = True
        # every GT step carries the class in both modalities; nothing else carries it in both
        assert (za[gt] > 0.6).all() and (zv[gt] > 0.6).all()
        both = (za > 0.6) & (zv > 0.6)
        assert (both == gt).all()
        labelled = {classes.index(s.label) for s in ann.segments}
        only_a = (za > 0.6) & ~gt
        only_v = (zv > 0.6) & ~gt
        assert not set(np.nonzero(only_a.any(0))[0]) & labelled
        n_dist_a += int(only_a.any())
        n_dist_v += int(only_v.any())
    assert n_dist_a >= 35 and n_dist_v >= 35  # one audio-only and one visual-only distractor per video


def test_correlated_noise_statistics():
    cfg = PlantedConfig(**{**SMALL, "n_videos": 6, "events_per_video": (1, 1)}, signal=0.0, scene=0.0)
    feats, _, _ = make_planted_arrays(cfg, R)
    x = np.concatenate([feats[v][1] for v in feats])
    assert x.std() == pytest.approx(1.0, abs=0.05)
    a = np.concatenate([feats[v][1][:-1] for v in feats])
    b = np.concatenate([feats[v][1][1:] for v in feats])
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] == pytest.approx(2 / 3, abs=0.05)


def test_make_planted_avvp_shapes_and_modalities():
    cfg = PlantedConfig(num_classes=5, n_videos=50, audio_dim=12, visual_dim=20, noise=0.0, scene=0.0,
                        signal=1.0)
    audio, visual, labels, gt_a, gt_v = make_planted_avvp(cfg)
    assert audio.shape == (50, 10, 12) and visual.shape == (50, 10, 20)
    assert labels.shape == (50, 5) and gt_a.shape == gt_v.shape == (50, 5, 10)
    np.testing.assert_array_equal(labels, np.maximum(gt_a.max(2), gt_v.max(2)))
    a_only = (gt_a.max(2) > 0) & (gt_v.max(2) == 0)
    v_only = (gt_v.max(2) > 0) & (gt_a.max(2) == 0)
    both = (gt_a * gt_v).max(2) > 0
    assert a_only.sum() > 10 and v_only.sum() > 10 and both.sum() > 10
    pa, pv = planted_prototypes(cfg, avvp=True)
    za = np.einsum("ntd,cd->nct", audio, pa)
    zv = np.einsum("ntd,cd->nct", visual, pv)
    assert (za[gt_a > 0] > 0.6).all() and (za[gt_a == 0] < 0.6).all()
    assert (zv[gt_v > 0] > 0.6).all() and (zv[gt_v == 0] < 0.6).all()


def _train_linear_mil(feats, anns, classes, ids, shuffle, epochs=120, seed=0):
    """A deliberately simple weak model: per-step sigmoid(audio W_a) * sigmoid(visual W_v),
    top-k mean over time -> video BCE."""
    t_max = max(len(feats[v][0]) for v in ids)
    da, dv = feats[ids[0]][0].shape[1], feats[ids[0]][1].shape[1]
    a = np.zeros((len(ids), t_max, da), np.float32)
    v = np.zeros((len(ids), t_max, dv), np.float32)
    m = np.zeros((len(ids), t_max), bool)
    y = np.zeros((len(ids), len(classes)), np.float32)
    for i, vid in enumerate(ids):
        n = len(feats[vid][0])
        a[i, :n], v[i, :n], m[i, :n] = feats[vid][0], feats[vid][1], True
        for s in anns[vid].segments:
            y[i, classes.index(s.label)] = 1
    if shuffle:
        y = y[np.random.default_rng(seed).permutation(len(y))]
    torch.manual_seed(seed)
    la, lv = torch.nn.Linear(da, len(classes)), torch.nn.Linear(dv, len(classes))
    opt = torch.optim.Adam([*la.parameters(), *lv.parameters()], lr=1e-2)
    at, vt, mt, yt = map(torch.from_numpy, (a, v, m, y))
    for _ in range(epochs):
        p = (torch.sigmoid(la(at)) * torch.sigmoid(lv(vt))).masked_fill(~mt[..., None], 0)
        vp = p.topk(3, dim=1).values.mean(1).clamp(1e-6, 1 - 1e-6)
        loss = torch.nn.functional.binary_cross_entropy(vp, yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lambda x_a, x_v: (torch.sigmoid(la(torch.from_numpy(x_a))) *
                             torch.sigmoid(lv(torch.from_numpy(x_v)))).detach().numpy()


def test_weak_linear_baseline_beats_label_shuffled_control_but_is_not_perfect():
    cfg = PlantedConfig(num_classes=4, n_videos=160, t_len=(24, 40), audio_dim=32, visual_dim=48)
    feats, anns, classes = make_planted_arrays(cfg, R)
    train = [v for v in anns if anns[v].subset == "train"]
    test = [v for v in anns if anns[v].subset == "test"]
    scores = {}
    for shuffle in (False, True):
        model = _train_linear_mil(feats, anns, classes, train, shuffle)
        pred = {}
        for vid in test:
            p = model(*feats[vid])
            pred[vid] = [(s, e, classes[c], sc) for s, e, c, sc in
                         probs_to_events(p, R, 0.5, len(p), anns[vid].duration)]
        scores[shuffle] = compute_map({v: anns[v] for v in test}, pred)
    real, ctrl = scores[False], scores[True]
    assert real["mAP"]["0.1"] > ctrl["mAP"]["0.1"] + 0.2
    assert real["avg"] > ctrl["avg"] + 0.05
    assert real["mAP"]["0.5"] < 0.9  # the default difficulty leaves room above a linear model
