"""EAR: pseudo-label generator, AVVP model (AMDF + ERM), losses, schedule, three-stage benchmark."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.avvp.ear import EAR, EARConfig, events_from_binary, warmup_cosine
from models.avvp.metrics import avvp_scores
from models.avvp.planted import DEMO_EAR, DEMO_GEN, make_demo_data
from models.avvp.pseudo_labels import GeneratorConfig, PseudoLabelGenerator, generate_pseudo_labels
from models.avvp.train import run_stages, write_outputs
from models.data.synthetic import PlantedConfig, make_planted_avvp


def _small_ear(**kw: object) -> EAR:
    torch.manual_seed(0)
    return EAR(EARConfig(**{**DEMO_EAR, **kw}))


# ------------------------------------------------------------------ generator
def test_generator_asymmetric_av_and_loss_weights() -> None:
    torch.manual_seed(0)
    gen = PseudoLabelGenerator(GeneratorConfig(audio_dim=8, visual_dim=12, n_heads=2)).eval()
    a, v = torch.randn(2, 5, 8), torch.randn(2, 5, 12)
    ta, tv = torch.randn(3, 8), torch.randn(3, 12)
    out = gen(a, v, ta, tv)
    torch.testing.assert_close(out["av_1"], out["dyn_v"] * out["stat_a"])
    torch.testing.assert_close(out["av_2"], out["dyn_a"] * out["stat_v"])
    # static probability = single-segment cosine with the text, no temporal context
    cos = F.normalize(a, dim=-1) @ F.normalize(ta, dim=-1).T
    torch.testing.assert_close(out["stat_a"], torch.sigmoid(gen.scale[2] * cos + gen.bias[2]))
    y_av, y_a, y_v = (torch.rand(2, 5, 3).round() for _ in range(3))
    bce = lambda p, y: F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), y)  # noqa: E731
    expect = (bce(out["av_1"], y_av) + bce(out["av_2"], y_av) + 0.05 * bce(out["dyn_a"], y_a)
              + 0.15 * bce(out["dyn_v"], y_v))
    torch.testing.assert_close(gen.loss(out, y_av, y_a, y_v), expect)


def test_pseudo_labels_are_soft_thresholded_and_filtered_by_video_labels() -> None:
    torch.manual_seed(1)
    gen = PseudoLabelGenerator(GeneratorConfig(audio_dim=8, visual_dim=8, n_heads=2, init_scale=20.0)).eval()
    rng = np.random.default_rng(0)
    a, v = rng.standard_normal((4, 6, 8)).astype(np.float32), rng.standard_normal((4, 6, 8)).astype(np.float32)
    ta, tv = rng.standard_normal((3, 8)).astype(np.float32), rng.standard_normal((3, 8)).astype(np.float32)
    labels = np.array([[1, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 0]], np.float32)
    pa, pv = generate_pseudo_labels(gen, a, v, labels, ta, tv, threshold=0.4)
    with torch.no_grad():
        dyn = gen(torch.tensor(a), torch.tensor(v), torch.tensor(ta), torch.tensor(tv))["dyn_a"].numpy()
    expect = np.where(dyn >= 0.4, dyn, 0.0) * labels[:, None, :]
    np.testing.assert_allclose(pa, expect, atol=1e-6)
    assert pa[3].max() == 0 and pv[3].max() == 0  # no video label -> no pseudo label
    assert (pa[1][:, [0, 2]] == 0).all()
    assert 0 < (pa > 0).mean() < 1  # the test is not vacuous


# ------------------------------------------------------------------ AVVP model
def test_forward_shapes_mmil_pooling_and_padding_invariance() -> None:
    model = _small_ear().eval()
    b, t = 3, 10
    batch = {"audio": torch.randn(b, t, 16), "visual": torch.randn(b, t, 24),
             "mask": torch.ones(b, t, dtype=torch.bool)}
    batch["mask"][1, 7:] = False
    with torch.no_grad():
        out = model(batch)
    assert out["prob_a"].shape == (b, t, 6) and out["video"].shape == (b, 6)
    # HAN's attentive MMIL pooling recomputed by hand
    x = out["nodes"].view(b, t, 2, 6, -1)
    with torch.no_grad():
        prob = torch.sigmoid((x * model.cls_w).sum(-1) + model.cls_b)
        at = (x * model.att_t).sum(-1).masked_fill(~batch["mask"][:, :, None, None], float("-inf")).softmax(1)
        am = (x * model.att_m).sum(-1).softmax(2)
    torch.testing.assert_close(out["video"], (prob * at * am).sum((1, 2)).clamp(1e-6, 1 - 1e-6))
    assert float(at[1, 7:].sum()) == 0.0
    # padded steps do not influence valid ones
    batch2 = {k: v.clone() for k, v in batch.items()}
    batch2["audio"][1, 7:] = 100.0
    batch2["visual"][1, 7:] = -50.0
    with torch.no_grad():
        out2 = model(batch2)
    torch.testing.assert_close(out2["prob_a"][1, :7], out["prob_a"][1, :7])
    torch.testing.assert_close(out2["video"], out["video"])


def test_amdf_audio_branch_reads_static_visual_features() -> None:
    """The audio-driven unit queries the *projected* visual features, not their temporal output."""
    model = _small_ear().eval()
    seen = {}
    model.fuse_a.register_forward_hook(lambda m, args, out: seen.update(kv=args[1]))
    batch = {"audio": torch.randn(2, 10, 16), "visual": torch.randn(2, 10, 24)}
    with torch.no_grad():
        model(batch)
        static_v = model.proj_v(batch["visual"])
    torch.testing.assert_close(seen["kv"], static_v)


def test_erm_adjacency_structure() -> None:
    model = _small_ear()
    assert len(model.uni) == 3 == len(model.multi)
    with torch.no_grad():
        a_u, a_m = model.uni[0].adjacency(), model.multi[0].adjacency()
    assert a_u.shape == (12, 12)
    assert float(a_u[:6, 6:].abs().sum()) == 0.0 and float(a_u[6:, :6].abs().sum()) == 0.0  # uni-modal
    assert float(a_m[:6, 6:].sum()) > 0  # cross-modal event relations
    torch.testing.assert_close(a_m.sum(1), torch.ones(12))


def test_loss_terms_class_weights_and_video_only_mode() -> None:
    model = _small_ear()
    pseudo = np.zeros((10, 10, 6), np.float32)
    pseudo[:8, :, 0] = 0.9  # class 0 frequent, class 1 rare, others absent
    pseudo[:1, :, 1] = 0.7
    model.set_class_weights(pseudo, pseudo)
    w = model.class_weight_a.numpy()
    assert w[1] > w[0] and w.mean() == pytest.approx(1.0, abs=1e-6)
    assert w[1] / w[0] == pytest.approx((10 / 1) ** 0.5 / (10 / 8) ** 0.5, rel=1e-5)
    batch = {"audio": torch.randn(4, 10, 16), "visual": torch.randn(4, 10, 24),
             "labels": torch.tensor(pseudo[:4].max(1) > 0, dtype=torch.float32),
             "pseudo_a": torch.tensor(pseudo[:4]), "pseudo_v": torch.tensor(pseudo[:4])}
    model.train()
    out = model(batch)
    loss = model.loss(out, batch)
    assert set(out["loss_terms"]) == {"video", "seg_a", "seg_v", "mix_a", "mix_v"}
    loss.backward()
    assert model.cls_w.grad is not None and float(model.cls_w.grad.abs().sum()) > 0
    video_only = _small_ear(use_pseudo=False)
    out = video_only(batch)
    loss = video_only.loss(out, batch)
    assert set(out["loss_terms"]) == {"video"}
    torch.testing.assert_close(loss, F.binary_cross_entropy(out["video"], batch["labels"]))


def test_warmup_cosine_schedule() -> None:
    assert warmup_cosine(0, 100, 10, 1e-4, 5e-6) == pytest.approx(1e-5)
    assert warmup_cosine(9, 100, 10, 1e-4, 5e-6) == pytest.approx(1e-4)
    assert warmup_cosine(10, 100, 10, 1e-4, 5e-6) == pytest.approx(1e-4)
    assert warmup_cosine(55, 100, 10, 1e-4, 5e-6) == pytest.approx(5e-6 + 0.5 * (1e-4 - 5e-6))
    assert warmup_cosine(100, 100, 10, 1e-4, 5e-6) == pytest.approx(5e-6)
    lrs = [warmup_cosine(s, 100, 10, 1.0, 0.0) for s in range(10, 100)]
    assert all(x >= y for x, y in zip(lrs[:-1], lrs[1:], strict=True))


def test_events_from_binary_and_detect_contract() -> None:
    pred = np.array([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0]], np.uint8)
    score = np.array([[0, 0.6, 0.8, 0, 0.9], [0] * 5], np.float32)
    ev = events_from_binary(pred, score)
    assert ev == [(1.0, 3.0, 0, pytest.approx(0.7)), (4.0, 5.0, 0, pytest.approx(0.9))]
    model = _small_ear().eval()
    batch = {"audio": torch.randn(2, 10, 16), "visual": torch.randn(2, 10, 24)}
    with torch.no_grad():
        out = model(batch)
    dets = model.detect(out, batch)
    pa, pv = model.parse(out)
    assert len(dets) == 2
    assert sum(e - s for d in dets for s, e, _, _ in d) == float((pa & pv).sum())


# ------------------------------------------------------------------ three-stage benchmark
@pytest.fixture(scope="module")
def planted_runs() -> dict[str, dict[str, float]]:
    """Stage 1 on planted dense AV data, stage 2 on a planted LLP-style set (models.data.synthetic),
    stage 3 with pseudo-labels vs video-level labels only vs shuffled labels (same generator)."""
    torch.manual_seed(0)
    target = make_planted_avvp(PlantedConfig(num_classes=6, n_videos=400, audio_dim=16, visual_dim=24, seed=0))
    data = make_demo_data(seed=0, target=target, n_train=240)
    gen_cfg = GeneratorConfig(**DEMO_GEN)
    res = run_stages(data, gen_cfg, EARConfig(**DEMO_EAR), seed=0)
    runs = {"pseudo": res["metrics"], "pseudo_labels": res["pseudo_metrics"]}
    runs["video"] = run_stages(data, gen_cfg, EARConfig(**{**DEMO_EAR, "use_pseudo": False}), seed=0)["metrics"]
    runs["shuffled"] = run_stages(data, gen_cfg, EARConfig(**DEMO_EAR), seed=0, shuffle_labels=True,
                                  generator=res["generator"])["metrics"]
    print(json.dumps({k: {m: round(100 * x, 1) for m, x in v.items()} for k, v in runs.items()}))
    runs["_res"] = res  # type: ignore[assignment]
    runs["_data"] = data  # type: ignore[assignment]
    return runs


def test_pseudo_labels_beat_video_labels_beat_shuffled(planted_runs: dict) -> None:
    pseudo, video, shuffled = (planted_runs[k]["seg_type"] for k in ("pseudo", "video", "shuffled"))
    assert pseudo > video + 0.10, (pseudo, video)
    assert video > shuffled + 0.05, (video, shuffled)
    assert planted_runs["pseudo"]["seg_av"] > planted_runs["video"]["seg_av"]
    # the frozen generator transfers from the dense classes to unseen target classes
    assert planted_runs["pseudo_labels"]["seg_type"] > 0.85
    stage1 = planted_runs["_res"]["logs"]["stage1"]
    assert stage1[-1]["loss"] < 0.7 * stage1[0]["loss"]


def test_write_outputs_predictions_and_metrics(planted_runs: dict, tmp_path) -> None:
    res, test = planted_runs["_res"], planted_runs["_data"]["test"]
    names = [f"ev{i}" for i in range(6)]
    write_outputs(tmp_path, res, test, names, extra={"mode": "pseudo"})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test"]["seg_type"] == pytest.approx(planted_runs["pseudo"]["seg_type"])
    pred = json.loads((tmp_path / "predictions.json").read_text())
    vid = str(test["video_ids"][0])
    n_a = sum(e - s for s, e, _, _ in pred["videos"][vid]["audio"])
    assert n_a == int(res["pred"]["pred_a"][0].sum())
    # re-scoring the written binary predictions reproduces the metric
    rescored = avvp_scores(res["pred"]["pred_a"], res["pred"]["pred_v"], test["gt_a"], test["gt_v"])
    assert math.isclose(rescored["seg_type"], metrics["test"]["seg_type"], rel_tol=1e-9)
    assert not list(tmp_path.glob("*.tmp"))


def test_stage3_cli_on_npz_files(tmp_path) -> None:
    """The file-based stage 3: without --pseudo it trains from video-level labels; names, dims and
    class names come from the files."""
    from models.avvp.train import main

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        gt_a = (rng.random((n, 3, 10)) < 0.3).astype(np.uint8)
        gt_v = (rng.random((n, 3, 10)) < 0.3).astype(np.uint8)
        labels = ((gt_a | gt_v).max(2)).astype(np.float32)
        np.savez(tmp_path / f"{split}.npz", audio=rng.standard_normal((n, 10, 5)).astype(np.float32),
                 visual=rng.standard_normal((n, 10, 7)).astype(np.float32), labels=labels, gt_a=gt_a, gt_v=gt_v,
                 class_names=np.array(["Dog", "Violin_fiddle", "Speech"]))
    out = tmp_path / "run a"
    ear = json.dumps({"d_model": 8, "n_heads": 2, "d_event": 4, "epochs": 1, "warmup_epochs": 0, "batch_size": 6,
                      "select": "last"})
    assert main(["stage3", "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"),
                 "--out", str(out), "--ear", ear]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"seg_type", "evt_event"} and metrics["mode"] == "video"
    assert metrics["selection"]["by"] == "last epoch" and metrics["test_videos"]["missing"] == 0
    assert metrics["ear_config"]["visual_dim"] == 7 and metrics["ear_config"]["num_classes"] == 3
    pred = json.loads((out / "predictions.json").read_text())
    assert set(pred["videos"]) == {f"{i}" for i in range(6)}
    assert (out / "ear.pt").is_file() and (out / "curve.png").is_file()
    assert len(list((out / "timelines").glob("*.png"))) == 4
    with pytest.raises(SystemExit):  # stage 3 has no --dense; an unknown flag is an argparse error
        main(["stage3", "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"),
              "--out", str(out), "--dense", "x.npz"])
    with pytest.raises(ValueError, match="validation split"):  # best-epoch selection needs --val
        main(["stage3", "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"),
              "--out", str(out), "--ear", json.dumps({**json.loads(ear), "select": "best_val"})])


def test_stage_by_stage_cli_reproduces_the_in_memory_run(tmp_path) -> None:
    """stage1 -> generator.pt -> stage2 -> pseudo_labels.npz -> stage3, one process each (as the Snakemake
    rules run them), gives exactly the metrics of run_stages in one process; the shuffled control's
    stage 3 refuses pseudo-labels made from unshuffled labels."""
    from extractors.io import save_npz
    from models.avvp.train import main

    data = make_demo_data(seed=1, n_dense=40, n_train=48, n_val=16, n_test=24)
    save_npz(tmp_path / "dense.npz", **data["dense"])
    for split in ("train", "val", "test"):
        save_npz(tmp_path / f"{split}.npz", **data[split])
    gen_over = {**DEMO_GEN, "epochs": 3}
    ear_over = {**DEMO_EAR, "epochs": 3, "batch_size": 16}
    f = {k: str(tmp_path / k) for k in ("dense.npz", "train.npz", "val.npz", "test.npz", "gen.pt", "pl.npz", "out")}
    assert main(["stage1", "--dense", f["dense.npz"], "--out", f["gen.pt"], "--gen", json.dumps(gen_over),
                 "--seed", "1"]) == 0
    assert main(["stage2", "--generator", f["gen.pt"], "--train", f["train.npz"], "--val", f["val.npz"],
                 "--test", f["test.npz"], "--out", f["pl.npz"]]) == 0
    assert main(["stage3", "--train", f["train.npz"], "--val", f["val.npz"], "--test", f["test.npz"],
                 "--pseudo", f["pl.npz"], "--out", f["out"], "--ear", json.dumps(ear_over), "--seed", "1"]) == 0
    got = json.loads((tmp_path / "out" / "metrics.json").read_text())
    ref = run_stages(data, GeneratorConfig(**gen_over), EARConfig(**ear_over), seed=1)
    assert got["mode"] == "pseudo"
    assert got["test"] == pytest.approx(ref["metrics"], abs=1e-12)
    assert got["pseudo_labels_train"] == pytest.approx(ref["pseudo_metrics"], abs=1e-12)
    assert set(got["pseudo_labels"]) == {"val", "test"}  # Table III: both evaluation splits
    for split in ("val", "test"):
        assert got["pseudo_labels"][split] == pytest.approx(ref["pseudo_eval"][split], abs=1e-12)
    assert got["selection"] == {**ref["selection"], "val": pytest.approx(ref["selection"]["val"], abs=1e-12)}
    stage1 = json.loads((tmp_path / "gen.json").read_text())
    assert [h["loss"] for h in stage1["log"]] == pytest.approx([h["loss"] for h in ref["logs"]["stage1"]])
    with pytest.raises(SystemExit, match="other video labels"):
        main(["stage3", "--train", f["train.npz"], "--val", f["val.npz"], "--test", f["test.npz"], "--pseudo",
              f["pl.npz"], "--shuffle-labels", "--out", f["out"], "--ear", json.dumps(ear_over)])
    assert not list(tmp_path.rglob("*.tmp*"))


def test_dense_arrays_from_unav_style_annotations() -> None:
    from extractors.recipes import get_recipe
    from models.avvp.train import dense_arrays
    from models.data.annotations import Segment, VideoAnnotation

    rec = get_recipe("unav100")  # step 0.32 s, centre of step t at 0.48 + 0.32 t
    ann = VideoAnnotation("v 1", "train", 5.0, [Segment(0.48, 1.12, "dog"), Segment(1.0, 1.5, "cat")])
    fa, fv = np.ones((12, 4), np.float32), np.ones((9, 6), np.float32)
    out = dense_arrays([(ann, fa, fv)], ["cat", "dog"], rec, t_max=10)
    assert out["mask"][0].tolist() == [True] * 9 + [False]  # audio/visual cut to the shorter one
    assert np.flatnonzero(out["av_labels"][0, :, 1]).tolist() == [0, 1, 2]  # centres 0.48, 0.80, 1.12
    assert np.flatnonzero(out["av_labels"][0, :, 0]).tolist() == [2, 3]  # centres 1.12, 1.44 in [1.0, 1.5]
    assert out["visual"][0, 9].sum() == 0


def test_ear_control_shuffles_with_the_localizers_rule() -> None:
    """One seed rule for every label-shuffled control (models.run.controls): EAR's shuffled video labels are
    the rows the localizers' ShuffledLabels gives the same videos."""
    from models.run.controls import ShuffledLabels, shuffle_permutation, shuffled_labels

    y = np.eye(7, dtype=np.float32)[[0, 1, 2, 3, 4, 5, 6, 0, 1, 2]]
    items = [{"labels": torch.from_numpy(row)} for row in y]
    for seed in (0, 3):
        perm = shuffle_permutation(len(y), seed)
        assert ShuffledLabels(items, seed).perm == perm
        assert np.array_equal(shuffled_labels(y, seed), y[perm])
    assert shuffle_permutation(10, 0) == torch.randperm(10, generator=torch.Generator().manual_seed(7919)).tolist()
