"""Issue #31: single-modality distractors in the real-structure planted release and their count, the
per-step ceiling of MIL (``targets: step``), and per-batch padding (outputs unchanged on valid steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from extractors.recipes import get_recipe
from models.data.annotations import class_list
from models.data.dataset import FeatureDataset, collate, trim_padding
from models.data.planted_real import (
    MatchedFilter,
    RealPlantedConfig,
    event_steps,
    make_real_planted,
    make_real_planted_arrays,
    planted_patterns,
    read_distractors,
)
from models.data.synthetic import PlantedConfig, make_planted
from models.localizers.input_norm import fit_input_norm
from models.localizers.registry import build_model
from models.run.metrics import distractors_reported
from models.run.runtime import model_from_checkpoint
from models.run.train import train

RECIPE = get_recipe("unav100")



def test_distractors_are_one_stream_unannotated_and_listed(unav, tmp_path):
    base = RealPlantedConfig(fraction=0.004, visual_dim=64, nnz_visual=8, seed=1)
    cfg = RealPlantedConfig(**{**base.__dict__, "distractors_per_video": 2.0})
    dis: dict = {}
    f0, a0, classes = make_real_planted_arrays(unav, base, RECIPE)
    f1, a1, _ = make_real_planted_arrays(unav, cfg, RECIPE, dis)
    assert a1 == a0  # not annotated: the annotations are those of the release without distractors
    pa, pv = planted_patterns(cfg, len(classes))
    cidx = {c: i for i, c in enumerate(classes)}
    kinds = set()
    assert sum(len(v) for v in dis.values()) > len(f0)  # ~2 per video
    for vid in f0:
        evs = dis.get(vid, [])
        labels = {s.label for s in a0[vid].segments}
        assert all(e["label"] not in labels for e in evs)  # a class with no annotated segment in the video
        assert len({e["label"] for e in evs}) == len(evs)  # each class once: never an unlabelled AV event
        for stream, (x0, x1, p) in (("audio", (f0[vid][0], f1[vid][0], pa)), ("visual", (f0[vid][1], f1[vid][1], pv))):
            mine = [e for e in evs if e["kind"] == f"{stream}_only"]
            if not mine:  # a stream without distractors is the release without them, bit for bit
                np.testing.assert_array_equal(x1, x0)
                continue
            kinds.add(stream)
            ann = type(a0[vid])(vid, "x", a0[vid].duration, [])
            on = np.zeros((len(x0), len(classes)), np.float32)
            for e in mine:
                ann.segments[:] = [type(a0[vid].segments[0])(*e["segment"], e["label"])]
                on += event_steps(ann, cidx, len(x0), RECIPE)
            np.testing.assert_allclose(x1 - x0, cfg.signal * on @ p, atol=1e-4)  # that pattern, on its steps
    assert kinds == {"audio", "visual"}
    store, anns, _ = make_real_planted(unav, cfg, tmp_path, RECIPE)
    assert json.loads((tmp_path / "distractors.json").read_text()) == dis
    test = {v: a for v, a in anns.items() if a.subset == "test"}
    listed = read_distractors(tmp_path / "distractors.json", test)
    assert listed and all(v in test for v, _ in listed)
    # the oracle takes the minimum of the two streams: one stream's evidence alone is not an event
    ds = FeatureDataset(store, anns, classes, RECIPE, subset="test")
    oracle = MatchedFilter(pa, pv, cfg.signal).fit_background(ds)
    batch = collate([ds[ds.video_ids.index(v)] for v, _ in listed[:4]])
    p = oracle(batch)["p_av"]
    for b, (vid, e) in enumerate(listed[:4]):
        n = int(batch["mask"][b].sum())
        ann = type(anns[vid])(vid, "x", anns[vid].duration, [type(anns[vid].segments[0])(*e["segment"], e["label"])])
        on = torch.from_numpy(event_steps(ann, cidx, n, RECIPE) > 0)
        events = torch.from_numpy(event_steps(anns[vid], cidx, n, RECIPE) > 0)
        p_dis, p_ev = float(p[b, :n][on].mean()), float(p[b, :n][events].mean())
        assert p_dis < 0.4 and p_dis < 0.5 * p_ev, (p_dis, p_ev)


def test_distractors_reported_counts_class_and_overlap():
    dis = [("v1", {"segment": [10.0, 20.0], "label": "dog"}), ("v1", {"segment": [30.0, 40.0], "label": "car"}),
           ("v2", {"segment": [0.0, 10.0], "label": "dog"})]
    preds = {"v1": [(11.0, 21.0, "dog", 0.9),  # tIoU 9/11: reported
                    (30.0, 34.0, "car", 0.8)],  # tIoU 0.4: not
             "v2": [(0.0, 10.0, "cat", 0.9)]}  # other class: not
    assert distractors_reported(preds, dis) == 1
    assert distractors_reported(preds, dis, min_tiou=0.3) == 2
    results = {"results": {"v2": [{"segment": [1.0, 9.0], "label": "dog", "score": 0.1}]}}
    assert distractors_reported(results, dis) == 1


def _fake_batch(lengths: list[int], t_max: int = 40, da: int = 6, dv: int = 10, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    mask = torch.arange(t_max)[None] < torch.tensor(lengths)[:, None]
    m = mask[..., None].float()
    segs = [torch.tensor([[1.0, n / 2, 0.0], [n / 3, n - 0.5, 2.0]]) for n in lengths]
    return {"audio": torch.rand(b, t_max, da, generator=g) * m, "visual": torch.rand(b, t_max, dv, generator=g) * m,
            "mask": mask, "labels": torch.tensor([[1.0, 0, 1]] * b), "segments": segs}


@pytest.mark.parametrize("name,cfg", [("mil", {}), ("mil", {"targets": "step"}), ("clasp", {"n_heads": 2})])
def test_trimmed_padding_leaves_valid_outputs_loss_and_gradients_unchanged(name, cfg):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, audio_dim=6, visual_dim=10, hidden_dim=16, dropout=0.0, **cfg)
    assert model.pad_free
    batch = _fake_batch([23, 9, 17])
    fit_input_norm(model, [{k: batch[k][i] for k in ("audio", "visual", "mask")} for i in range(3)])
    short = trim_padding(batch)
    assert short["audio"].shape[1] == 23
    results = []
    for b in (batch, short):
        model.zero_grad()
        out = model(b)
        loss = model.loss(out, b)
        loss.backward()
        results.append((out["p_av"][:, :23].detach(), out["video_p"].detach(), loss.detach(),
                        [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (p0, v0, l0, g0), (p1, v1, l1, g1) = results
    torch.testing.assert_close(p1, p0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v1, v0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    model.eval()
    with torch.no_grad():  # the same events; scores equal up to float rounding (the decoder sums over steps)
        for d1, d0 in zip(model.detect(model(short), short), model.detect(model(batch), batch), strict=True):
            d1, d0 = sorted(d1), sorted(d0)
            assert [d[:3] for d in d1] == [d[:3] for d in d0]
            np.testing.assert_allclose([d[3] for d in d1], [d[3] for d in d0], rtol=1e-4, atol=1e-6)


def test_step_supervised_mil_learns_per_step_labels(tmp_path):
    cfg = PlantedConfig(num_classes=4, n_videos=60, t_len=(20, 30), audio_dim=16, visual_dim=24, seed=0)
    store, anns, classes = make_planted(cfg, tmp_path / "data", RECIPE)
    ds = {s: FeatureDataset(store, anns, classes, RECIPE, subset=s, t_max=32) for s in ("train", "validation", "test")}
    best = train("mil", ds["train"], ds["validation"], tmp_path / "run", {"hidden_dim": 16, "targets": "step"},
                 epochs=8, batch_size=8, lr=3e-3, seed=0, device="cpu", amp=False, resume=False, progress=False,
                 plot_every=0)
    model = model_from_checkpoint(best, "mil").eval()
    assert model.supervision == "step" and model.cfg.targets == "step"
    batch = collate([ds["test"][i] for i in range(len(ds["test"]))])
    from models.localizers.base import step_targets
    with torch.no_grad():
        p = model(batch)["p_av"]
    y = step_targets(batch["segments"], p.shape[1], p.shape[2])
    m = batch["mask"]
    p, y = p[m].flatten().numpy(), y[m].flatten().numpy()
    order = np.argsort(-p)
    hits = y[order] > 0
    ap = float((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits].mean())
    assert ap > 3 * y.mean(), (ap, y.mean())  # per-step AP well above chance (the positive rate)
    with pytest.raises(ValueError, match="targets"):
        build_model("clasp", num_classes=3, targets="step")
    assert class_list(anns) == classes
