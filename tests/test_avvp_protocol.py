"""The LLP evaluation protocol of HAN/VALOR around EAR: inference gating, best-validation-epoch selection,
pseudo-label scores on the evaluation splits, the paper's lost values, and the LLP readers and split job on
slices of the real LLP CSVs (tests/data/llp/, quirks kept)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.avvp.ear import EAR, LOST_VALUES, EARConfig
from models.avvp.planted import DEMO_EAR
from models.avvp.train import predict_ear, split_coverage, train_ear
from models.data.llp import llp_segment_matrix, read_llp

LLP = Path(__file__).parent / "data" / "llp"


def _small_ear(**kw: object) -> EAR:
    torch.manual_seed(0)
    return EAR(EARConfig(**{**DEMO_EAR, **kw}))


# ------------------------------------------------------------------ 1. gating
def test_gating_by_the_overall_video_prediction_as_han() -> None:
    """HAN/VALOR: ``Pa = (Pa >= 0.5) * repeat(o)`` with ``o`` the *overall* video prediction for both
    modalities; gating='modality' uses each modality's own video probability."""
    rng = np.random.default_rng(0)
    b, t, c = 4, 10, 6
    out = {k: torch.tensor(rng.random((b, t, c)), dtype=torch.float32) for k in ("prob_a", "prob_v")}
    out.update({k: torch.tensor(rng.random((b, c)), dtype=torch.float32) for k in ("video", "video_a", "video_v")})
    out["mask"] = torch.ones(b, t, dtype=torch.bool)
    out["mask"][2, 8:] = False
    pa, pv = _small_ear().parse(out)  # default: gating="video"
    o = (out["video"].numpy() >= 0.5)[:, None, :]
    m = out["mask"].numpy()[:, :, None]
    for got, key in ((pa, "prob_a"), (pv, "prob_v")):
        ref = ((out[key].numpy() >= 0.5) & o & m).transpose(0, 2, 1)
        np.testing.assert_array_equal(got, ref.astype(np.uint8))
    qa, qv = _small_ear(gating="modality").parse(out)
    ref_a = ((out["prob_a"].numpy() >= 0.5) & (out["video_a"].numpy() >= 0.5)[:, None, :] & m).transpose(0, 2, 1)
    np.testing.assert_array_equal(qa, ref_a.astype(np.uint8))
    assert (qa != pa).any() and (qv != pv).any()  # the two options differ on these inputs
    with pytest.raises(ValueError, match="gating"):
        _small_ear(gating="both")


# ------------------------------------------------------------------ 2. epoch selection
def _tiny_split(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    gt_a = (rng.random((n, 6, 10)) < 0.3).astype(np.uint8)
    gt_v = (rng.random((n, 6, 10)) < 0.3).astype(np.uint8)
    proto_a, proto_v = rng.standard_normal((6, 16)), rng.standard_normal((6, 24))
    return {"audio": (np.einsum("nct,cd->ntd", gt_a, proto_a) + rng.standard_normal((n, 10, 16))).astype(np.float32),
            "visual": (np.einsum("nct,cd->ntd", gt_v, proto_v) + rng.standard_normal((n, 10, 24))).astype(np.float32),
            "labels": (gt_a | gt_v).max(2).astype(np.float32), "gt_a": gt_a, "gt_v": gt_v}


def test_best_validation_epoch_is_kept() -> None:
    """select='best_val': validation Type@AV after every epoch, and the returned model is the earliest
    epoch with the best one (VALOR's strict '>'); select='last' keeps the last epoch."""
    from models.avvp.train import avvp_metrics

    rng = np.random.default_rng(0)
    train, val = _tiny_split(rng, 32), _tiny_split(rng, 12)
    cfg = {"use_pseudo": False, "epochs": 6, "warmup_epochs": 1, "batch_size": 8}
    model, log = _small_ear(**cfg), []
    sel = train_ear(model, train["audio"], train["visual"], train["labels"], seed=0, log=log, val=val)
    scores = [h["val_seg_type"] for h in log]
    assert len(scores) == 6 and sel["epoch"] == int(np.argmax(scores)) and sel["by"] == "best validation seg_type"
    pred = predict_ear(model, val["audio"], val["visual"])
    assert avvp_metrics(pred["pred_a"], pred["pred_v"], val["gt_a"], val["gt_v"])["seg_type"] == \
        pytest.approx(max(scores), abs=1e-12)
    assert len(set(np.round(scores, 9))) > 1  # the epochs differ, so the choice matters
    last, log2 = _small_ear(**cfg, select="last"), []
    sel2 = train_ear(last, train["audio"], train["visual"], train["labels"], seed=0, log=log2)
    assert sel2 == {"by": "last epoch", "epoch": 5, "val": None} and "val_seg_type" not in log2[0]
    # the same training run: the last epoch's weights differ from the chosen one unless it is the last
    if sel["epoch"] != 5:
        assert any(not torch.equal(p, q) for p, q in zip(model.state_dict().values(), last.state_dict().values(),
                                                           strict=True))
    with pytest.raises(ValueError, match="validation split"):
        train_ear(_small_ear(**cfg), train["audio"], train["visual"], train["labels"])


# ------------------------------------------------------------------ 6. mixup and lost values
def test_mixup_loss_is_plain_bce_unless_the_certainty_option_is_on() -> None:
    nodes = torch.randn(7, 6, 8)
    y = torch.rand(7, 6) * (torch.rand(7, 6) > 0.5)
    got = {}
    for flag in (False, True):
        model = _small_ear(mixup_certainty_weight=flag).train()
        torch.manual_seed(3)
        got[flag] = model._mixup_loss(nodes, y)
        torch.manual_seed(3)
        perm = torch.randperm(7)
        lam = torch.distributions.Beta(1.0, 1.0).sample((7, 1))
        x = lam[..., None] * nodes + (1 - lam[..., None]) * nodes[perm]
        ym = lam * y + (1 - lam) * y[perm]
        p = torch.sigmoid(model.classify(x)).clamp(1e-6, 1 - 1e-6)
        bce = F.binary_cross_entropy(p, ym, reduction="none")
        u = torch.maximum(y, 1 - y)
        ref = ((lam * u + (1 - lam) * u[perm]) * bce).mean() if flag else bce.mean()
        torch.testing.assert_close(got[flag], ref)
    assert not torch.isclose(got[False], got[True])
    assert EARConfig().mixup_certainty_weight is False


def test_lost_values_are_config_fields_with_a_named_source() -> None:
    from models.avvp.pseudo_labels import GeneratorConfig

    assert set(LOST_VALUES) == {"pseudo_threshold", "class_balance_beta", "mixup_alpha"}
    assert f"= {GeneratorConfig().threshold}" in LOST_VALUES["pseudo_threshold"]
    assert f"= {EARConfig().class_balance_beta}" in LOST_VALUES["class_balance_beta"]
    assert f"= {EARConfig().mixup_alpha}" in LOST_VALUES["mixup_alpha"]
    assert all("lost" in v for v in LOST_VALUES.values())


# ------------------------------------------------------------------ 5. real-format CSV slices
def _han_matrix(eval_csv: Path, vid: str, classes: list[str]) -> np.ndarray:
    """HAN's loop (main_avvp.py eval): GT[idx, onset:offset] = 1 for every row of the video."""
    gt = np.zeros((len(classes), 10))
    for line in eval_csv.read_text().splitlines()[1:]:
        f, on, off, lab = line.split("\t")
        if f == vid:
            gt[classes.index(lab), int(on):int(off)] = 1
    return gt


def test_read_llp_on_real_csv_slices_keeps_the_quirks() -> None:
    val = read_llp(LLP / "AVVP_val_pd.csv", LLP / "AVVP_eval_audio.csv", LLP / "AVVP_eval_visual.csv")
    test = read_llp(LLP / "AVVP_test_pd.csv", LLP / "AVVP_eval_audio.csv", LLP / "AVVP_eval_visual.csv")
    train = read_llp(LLP / "AVVP_train.csv")
    assert (len(train), len(val), len(test)) == (20, 16, 18)
    assert not set(train) & set(val) and not set(val) & set(test)
    assert any(v.startswith("-") for v in val)  # YouTube ids may start with '-'
    # eval rows of files in no split are read by no split
    for vid in ("CSWQ_HzQ_10_20", "19jWnmYnlD8_30_400", "12eWNawPekw_30_40"):
        assert vid in (LLP / "AVVP_eval_audio.csv").read_text() and vid not in {**train, **val, **test}
    classes = sorted({lab for split in (train, val, test) for r in split.values() for lab in r["labels"]})
    # rows with onset >= offset (9 -> 0, 0 -> 0, 9 -> 9, ...) mark nothing, as in HAN
    quirks = {"8DF2PxdT5tE_390_400": (val, "Cheering"), "H5WcJwyjxIg_2_12": (test, "Baby_cry_infant_cry"),
              "CaC2xvdLC34_250_260": (test, "Speech")}
    for vid, (split, lab) in quirks.items():
        rows = [sg for sg in split[vid]["audio"] if sg.label == lab]
        assert any(sg.start >= sg.end for sg in rows)
    n_checked = 0
    for split in (val, test):
        for vid, r in split.items():
            for mod in ("audio", "visual"):
                ref = _han_matrix(LLP / f"AVVP_eval_{mod}.csv", vid, classes)
                np.testing.assert_array_equal(llp_segment_matrix(r[mod], classes), ref)
                n_checked += int(ref.sum() > 0)
    assert n_checked > 40
    # videos of the evaluation splits without eval rows in one modality (real LLP has some)
    assert val["7YChvLYpyUk_30_40"]["audio"] == [] and val["7YChvLYpyUk_30_40"]["visual"]


def test_split_job_on_real_csvs_counts_a_missing_clip_into_metrics_and_summary(tmp_path, capsys) -> None:
    """models.avvp.inputs split on the real test slice: a clip that was never downloaded and one
    whose extraction failed shrink the split only with a logged count, ``missing_ids`` in the .npz, the
    count in ``metrics.json`` (split_coverage) and a line on the summary page."""
    from extractors.io import load_npz, save_npz, write_json
    from models.avvp.inputs import main
    from models.report.summary import write_avvp_summary

    test_ids = [line.split("\t")[0] for line in (LLP / "AVVP_test_pd.csv").read_text().splitlines()[1:]]
    never, failed = test_ids[3], test_ids[7]
    rng = np.random.default_rng(0)
    clips = tmp_path / "clips"  # per-clip files as the llp_features jobs write them
    for vid in test_ids:
        if vid == never:
            continue
        if vid == failed:
            save_npz(clips / f"{vid}.npz")
            write_json(clips / f"{vid}.json", {"id": vid, "failed": "RuntimeError: bad stream"})
            continue
        s = 10 if vid != test_ids[0] else 7  # one short clip: padded, masked
        save_npz(clips / f"{vid}.npz", clip=rng.standard_normal((s, 8)).astype(np.float32),
                 clap=rng.standard_normal((s, 4)).astype(np.float32))
        write_json(clips / f"{vid}.json", {"id": vid})
    splits = [read_llp(LLP / f) for f in ("AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv")]
    classes = sorted({lab for s in splits for r in s.values() for lab in r["labels"]})
    save_npz(tmp_path / "text.npz", class_names=np.array(classes))
    assert main(["split", "--weak-csv", str(LLP / "AVVP_test_pd.csv"), "--eval-audio-csv",
                 str(LLP / "AVVP_eval_audio.csv"), "--eval-visual-csv", str(LLP / "AVVP_eval_visual.csv"),
                 "--features-dir", str(clips), "--text", str(tmp_path / "text.npz"),
                 "--visual", "clip", "--audio", "clap", "--no-generator", "--out", str(tmp_path / "test.npz")]) == 0
    err = capsys.readouterr().err
    assert "AVVP_test_pd.csv: 16 of 18 videos have features; 2 left out" in err and failed in err
    arr = load_npz(tmp_path / "test.npz")
    assert list(arr["video_ids"]) == [v for v in test_ids if v not in (never, failed)]  # CSV order kept
    assert sorted(arr["missing_ids"]) == sorted([never, failed])
    assert arr["mask"][0].tolist() == [True] * 7 + [False] * 3
    for vid in ("H5WcJwyjxIg_2_12", "CaC2xvdLC34_250_260"):  # rows with onset >= offset
        i = list(arr["video_ids"]).index(vid)
        np.testing.assert_array_equal(arr["gt_a"][i], _han_matrix(LLP / "AVVP_eval_audio.csv", vid, classes))
    cov = split_coverage(arr)
    assert (cov["scored"], cov["listed"], cov["missing"]) == (16, 18, 2)
    metrics = tmp_path / "run" / "video" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"test": None, "log": [{"loss": 1.0}], "test_videos": cov,
                                   "selection": {"by": "last epoch", "epoch": 0, "val": None}}))
    write_avvp_summary(tmp_path / "summary.html", "slice", [metrics])
    page = (tmp_path / "summary.html").read_text()
    assert "Test split: 16 of 18 videos scored" in page and never in page


def test_summary_shows_the_pseudo_label_table(tmp_path) -> None:
    from models.avvp.metrics import KEYS
    from models.report.summary import write_avvp_summary

    score = {k: 0.5 for k in KEYS}
    run = tmp_path / "pseudo" / "metrics.json"
    run.parent.mkdir()
    run.write_text(json.dumps({"test": score, "log": [{"loss": 1.0}], "pseudo_labels_train": None,
                               "pseudo_labels": {"val": {**score, "seg_type": 0.612}, "test": {**score, "seg_type": 0.634}},
                               "selection": {"by": "best validation seg_type", "epoch": 3, "val": score},
                               "test_videos": {"scored": 5, "listed": 5, "missing": 0, "missing_ids": []}}))
    write_avvp_summary(tmp_path / "s.html", "b", [run])
    page = (tmp_path / "s.html").read_text()
    assert "Table III" in page and "61.2" in page and "63.4" in page and "epoch 3" in page
    assert "all 5 videos of its CSV scored" in page


def test_dense_job_reads_per_clip_files_and_skips_a_failed_one(tmp_path, capsys) -> None:
    """models.avvp.inputs dense on per-clip files (avvp_dense_features): the videos with features are in
    the stage-1 data, the one whose extraction failed is named in the log and left out."""
    from extractors.io import load_npz, save_npz, write_json
    from models.avvp.inputs import main

    db = {f"v{i}": {"subset": "train", "duration": 4.0,
                    "annotations": [{"segment": [0.5, 2.5], "label": "dog", "label_id": 0},
                                    {"segment": [1.0, 3.0], "label": "car", "label_id": 1}]} for i in range(3)}
    (tmp_path / "ann.json").write_text(json.dumps({"database": db}))
    rng = np.random.default_rng(0)
    clips = tmp_path / "clips"
    for vid in ("v0", "v2"):
        save_npz(clips / f"{vid}.npz", clip=rng.standard_normal((4, 8)).astype(np.float32),
                 clap=rng.standard_normal((4, 6)).astype(np.float32))
        write_json(clips / f"{vid}.json", {"id": vid})
    save_npz(clips / "v1.npz")
    write_json(clips / "v1.json", {"id": "v1", "failed": "RuntimeError: bad stream"})
    save_npz(tmp_path / "text.npz", class_names=np.array(["dog", "car"]),
             text_a=rng.standard_normal((2, 6)).astype(np.float32), text_v=rng.standard_normal((2, 8)).astype(np.float32))
    assert main(["dense", "--unav-json", str(tmp_path / "ann.json"), "--features-dir", str(clips), "--text",
                 str(tmp_path / "text.npz"), "--t-max", "4", "--out", str(tmp_path / "dense.npz")]) == 0
    assert "v1: no features (RuntimeError: bad stream)" in capsys.readouterr().err
    dense = load_npz(tmp_path / "dense.npz")
    assert dense["audio"].shape[:2] == (2, 4) and dense["visual"].shape[:2] == (2, 4)
