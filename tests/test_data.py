"""Annotation readers, feature loaders, the memory-mapped FeatureStore and FeatureDataset."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.recipes import get_recipe
from models.data.activitynet import read_activitynet
from models.data.annotations import Segment, VideoAnnotation, class_list
from models.data.dataset import FeatureDataset, collate, make_loader
from models.data.features import load_video_features
from models.data.llp import llp_segment_matrix, read_llp
from models.data.steps import covered_steps, render_segments, seconds_to_steps
from models.data.store import FeatureStore
from models.data.unav import read_unav, write_unav

FIX = Path(__file__).parent / "fixtures"
R = get_recipe("unav100")


# --------------------------------------------------------------------------------- readers

def test_read_unav_fixture():
    anns = read_unav(FIX / "unav100_small.json")
    assert list(anns) == ["--HuBNHXu9I", "-0Hw1a2F0Zs", "-1Pp1mz_z4Q"]
    a = anns["--HuBNHXu9I"]
    assert a.subset == "train" and a.duration == pytest.approx(10.01)
    assert a.segments[1] == Segment(2.1, 10.01, "people shouting")
    assert len(a.segments) == 3  # duplicates are kept by the reader (the metric removes them)
    assert a.labels == ["dog barking", "people shouting"]
    assert anns["-0Hw1a2F0Zs"].subset == "validation"
    assert a.segments[1].label_id == 71
    # label_id order (8, 12, 58, 71), not sorted names: the reference code indexes classes by label_id
    assert class_list(anns) == ["car passing by", "dog barking", "playing cello", "people shouting"]


def test_write_unav_round_trip(tmp_path):
    anns = read_unav(FIX / "unav100_small.json")
    out = tmp_path / "sub" / "ann.json"
    write_unav(anns, out)
    assert read_unav(out) == anns
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    import json
    db = json.loads(out.read_text())["database"]
    assert db["-1Pp1mz_z4Q"]["annotations"][0]["label_id"] == 8  # the file's own id survives
    write_unav(anns, out, classes=class_list(anns))
    assert json.loads(out.read_text())["database"]["-1Pp1mz_z4Q"]["annotations"][0]["label_id"] == 0  # explicit list


def test_read_activitynet_fixture(tmp_path):
    anns = read_activitynet(FIX / "activitynet13_small.json")
    assert set(anns) == {"sJFgo9H6zNo", "V1zhqaGFY2A", "JDg--pjY5gg"}  # ids without the v_ prefix
    # ActivityNet's training/validation/testing are mapped to the splits everything else uses
    assert anns["JDg--pjY5gg"].segments == [] and anns["JDg--pjY5gg"].subset == "test"
    assert anns["sJFgo9H6zNo"].subset == "train" and anns["V1zhqaGFY2A"].subset == "validation"
    assert anns["V1zhqaGFY2A"].segments[1] == Segment(50.1, 98.2, "Ballet")
    assert class_list(anns) == ["Ballet", "Fun sliding down"]
    with pytest.raises(ValueError, match="no 'database' key"):
        bad = tmp_path / "results.json"
        bad.write_text('{"results": {}}')
        read_activitynet(bad)


def test_read_llp_fixture():
    llp = read_llp(FIX / "llp_AVVP_train_small.csv", FIX / "llp_AVVP_eval_audio_small.csv",
                   FIX / "llp_AVVP_eval_visual_small.csv")
    assert list(llp) == ["BjCEufrlXm4_20_30", "7nSYwyaP4QE_50_60", "MVWVECUju4w_0_10"]
    v = llp["BjCEufrlXm4_20_30"]
    assert v["labels"] == ["Speech", "Dog"]
    assert v["audio"] == [Segment(0, 4, "Speech"), Segment(6, 10, "Dog"), Segment(9, 9, "Speech")]
    assert v["visual"] == [Segment(5, 10, "Dog")]
    assert llp["MVWVECUju4w_0_10"]["audio"] == []
    assert "ZZZnotinlist_0_10" not in llp
    classes = ["Dog", "Speech"]
    m = llp_segment_matrix(v["audio"], classes)
    np.testing.assert_array_equal(m[1], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])  # onset 9 offset 9 marks nothing
    np.testing.assert_array_equal(m[0], [0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    only_weak = read_llp(FIX / "llp_AVVP_train_small.csv")
    assert only_weak["7nSYwyaP4QE_50_60"]["labels"] == ["Singing", "Banjo"]


# --------------------------------------------------------------------------------- features

def test_load_video_features_ours_and_public_release_layouts(tmp_path):
    rng = np.random.default_rng(0)
    ours = tmp_path / "results" / "unav100"
    (ours / "features" / "i3d").mkdir(parents=True)
    (ours / "features" / "vggish").mkdir(parents=True)
    v = rng.standard_normal((12, 2048)).astype(np.float32)
    a = rng.standard_normal((11, 128)).astype(np.float32)
    np.save(ours / "features" / "i3d" / "vid 'x'.npy", v)
    np.save(ours / "features" / "vggish" / "vid 'x'.npy", a)
    la, lv = load_video_features("vid 'x'", ours)
    assert la.shape == (11, 128) and lv.shape == (11, 2048) and lv.dtype == np.float32
    np.testing.assert_array_equal(lv, v[:11])

    rel = tmp_path / "unav_release"
    rel.mkdir()
    rgb = rng.standard_normal((20, 1024))  # float64, as the public release stores I3D
    flow = rng.standard_normal((20, 1024))
    vgg = rng.standard_normal((22, 128)).astype(np.float32)
    np.save(rel / "abc_rgb.npy", rgb)
    np.save(rel / "abc_flow.npy", flow)
    np.save(rel / "abc_vggish.npy", vgg)
    ra, rv = load_video_features("abc", rel, layout="unav_release")
    assert ra.shape == (20, 128) and rv.shape == (20, 2048)
    assert ra.dtype == np.float32 and rv.dtype == np.float32
    np.testing.assert_array_equal(rv[:, :1024], rgb.astype(np.float32))
    np.testing.assert_array_equal(rv[:, 1024:], flow.astype(np.float32))
    np.testing.assert_array_equal(ra, vgg[:20])
    with pytest.raises(ValueError, match="unknown feature layout"):
        load_video_features("abc", rel, layout="other")


def _feats(n=5, da=8, dv=12, seed=0):
    rng = np.random.default_rng(seed)
    return {f"vid{i}": ((rng.standard_normal((7 + 3 * i, da)) * 10).astype(np.float32),
                        (rng.standard_normal((8 + 3 * i, dv)) * 10).astype(np.float32)) for i in range(n)}


def test_feature_store_round_trip_exact_fp16(tmp_path):
    feats = _feats()
    calls = []

    def loader(v):
        calls.append(v)
        return feats[v]

    store = FeatureStore.build(tmp_path / "store", list(feats), loader, meta={"k": 1})
    assert store.video_ids == list(feats) and len(store) == 5 and "vid4" in store
    assert calls == list(feats)  # streamed one by one in order
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["audio.f16", "index.json", "visual.f16"]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # temp dir renamed away
    reopened = FeatureStore(tmp_path / "store")
    assert reopened.video_ids == list(feats) and reopened.meta == {"k": 1}
    total = 0
    for vid, (a, v) in feats.items():
        ga, gv = reopened.get(vid)
        t = min(len(a), len(v))
        total += t
        assert ga.dtype == np.float16 and isinstance(ga, np.memmap)
        np.testing.assert_array_equal(ga, a[:t].astype(np.float16))
        np.testing.assert_array_equal(gv, v[:t].astype(np.float16))
        assert reopened.length(vid) == t
        ra, rv = reopened.read(vid)  # pread copies: same values, not memory-mapped
        assert not isinstance(ra, np.memmap) and ra.dtype == np.float16
        np.testing.assert_array_equal(ra, ga)
        np.testing.assert_array_equal(rv, gv)
    assert (tmp_path / "store" / "audio.f16").stat().st_size == total * 8 * 2
    # survives pickling (DataLoader workers) without carrying the data
    clone = pickle.loads(pickle.dumps(reopened))
    np.testing.assert_array_equal(clone.get("vid3")[1], reopened.get("vid3")[1])
    assert len(pickle.dumps(reopened)) < 5000
    # rebuild in place (overwrite) with different content
    feats2 = _feats(n=2, seed=1)
    s2 = FeatureStore.build(tmp_path / "store", list(feats2), feats2.__getitem__)
    assert s2.video_ids == ["vid0", "vid1"] and [p.name for p in tmp_path.iterdir()] == ["store"]


def test_feature_store_build_errors_leave_nothing_behind(tmp_path):
    feats = _feats()

    def failing(v):
        if v == "vid3":
            raise RuntimeError("decode failed for vid3")
        return feats[v]

    with pytest.raises(RuntimeError, match="vid3"):
        FeatureStore.build(tmp_path / "st", list(feats), failing)
    assert list(tmp_path.iterdir()) == []
    bad = dict(feats)
    bad["vid2"] = (bad["vid2"][0][:, :5], bad["vid2"][1])
    with pytest.raises(ValueError, match="differ from the first video"):
        FeatureStore.build(tmp_path / "st", list(bad), bad.__getitem__)
    with pytest.raises(ValueError, match="duplicate video ids"):
        FeatureStore.build(tmp_path / "st", ["vid0", "vid0"], feats.__getitem__)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------- dataset

def test_step_convention_helpers():
    # feature t is centred at 0.48 + 0.32 t; a segment covers steps whose centre lies inside
    s, e = seconds_to_steps(0.48 + 0.32 * 2, 0.48 + 0.32 * 5, R)
    assert (s, e) == pytest.approx((2.0, 5.0))
    assert covered_steps(s, e, 100) == (2, 6)  # centres exactly on the boundary are inside
    assert covered_steps(*seconds_to_steps(0.0, 0.5, R), 100) == (0, 1)
    assert covered_steps(*seconds_to_steps(0.0, 0.47, R), 100) == (0, 0)  # no centre inside
    assert covered_steps(-3.0, 500.0, 10) == (0, 10)
    dense = render_segments(np.array([[2.0, 5.0, 1], [-1.5, 0.2, 0]]), 8, 2)
    np.testing.assert_array_equal(dense[:, 1], [0, 0, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(dense[:, 0], [1, 0, 0, 0, 0, 0, 0, 0])


def _dataset(tmp_path, t_max=10, subset=None, clip_labels=False):
    feats = _feats(n=4)  # lengths 7, 10, 13, 16
    store = FeatureStore.build(tmp_path / "st", list(feats), feats.__getitem__)
    anns = {
        "vid0": VideoAnnotation("vid0", "train", 3.0, [Segment(0.0, 1.28, "b"), Segment(0.8, 2.0, "a")]),
        "vid1": VideoAnnotation("vid1", "train", 4.0, []),
        "vid2": VideoAnnotation("vid2", "test", 5.0, [Segment(4.0, 5.0, "c")]),
        "vid3": VideoAnnotation("vid3", "train", 6.0, [Segment(1.0, 6.0, "a"), Segment(4.5, 5.0, "c")]),
    }
    classes = class_list(anns)
    return FeatureDataset(store, anns, classes, R, subset=subset, t_max=t_max, clip_labels=clip_labels), feats


def test_dataset_padding_mask_and_segments(tmp_path):
    ds, feats = _dataset(tmp_path)
    assert ds.classes == ["a", "b", "c"] and len(ds) == 4
    it = ds[0]
    assert it["audio"].shape == (10, 8) and it["visual"].shape == (10, 12) and it["audio"].dtype == torch.float32
    assert it["mask"].tolist() == [True] * 7 + [False] * 3
    np.testing.assert_array_equal(it["audio"][:7].numpy(), feats["vid0"][0][:7].astype(np.float16).astype(np.float32))
    assert float(it["audio"][7:].abs().sum()) == 0.0
    assert it["labels"].tolist() == [1.0, 1.0, 0.0]
    np.testing.assert_allclose(it["segments"].numpy(), [[-1.5, 2.5, 1], [1.0, 4.75, 0]], atol=1e-6)
    # clipping: vid3 has 16 steps -> first 10 kept; segment 'c' at 4.5 s = step 12.56 is dropped,
    # segment 'a' end clamped to the last kept cell edge 9.5
    it3 = ds[3]
    assert it3["mask"].all() and it3["length"] == 16
    np.testing.assert_allclose(it3["segments"].numpy(), [[(1.0 - 0.48) / 0.32, 9.5, 0]], atol=1e-6)
    assert it3["labels"].tolist() == [1.0, 0.0, 1.0]  # full-video weak label by default
    ds_c, _ = _dataset(tmp_path / "c", clip_labels=True)
    assert ds_c[3]["labels"].tolist() == [1.0, 0.0, 0.0]
    assert ds[1]["segments"].shape == (0, 3)


def test_collate_matches_base_contract_and_loader_is_deterministic(tmp_path):
    ds, _ = _dataset(tmp_path, subset="train")
    assert ds.video_ids == ["vid0", "vid1", "vid3"]
    b = collate([ds[0], ds[1], ds[2]])
    assert b["audio"].shape == (3, 10, 8) and b["audio"].dtype == torch.float32
    assert b["visual"].shape == (3, 10, 12)
    assert b["mask"].dtype == torch.bool and b["mask"].shape == (3, 10)
    assert b["labels"].shape == (3, 3) and b["labels"].dtype == torch.float32
    assert isinstance(b["segments"], list) and b["segments"][0].shape == (2, 3)
    assert b["segments"][0].dtype == torch.float32
    assert b["video_ids"] == ["vid0", "vid1", "vid3"]
    assert b["durations"].dtype == torch.float32 and b["durations"].tolist() == [3.0, 4.0, 6.0]
    orders = []
    for _ in range(2):
        orders.append([vid for batch in make_loader(ds, 2, shuffle=True, seed=5) for vid in batch["video_ids"]])
    assert orders[0] == orders[1] and sorted(orders[0]) == ds.video_ids
    other = [vid for batch in make_loader(ds, 2, shuffle=True, seed=6) for vid in batch["video_ids"]]
    assert len(other) == 3
    # worker processes re-open the memory maps
    w = [batch["audio"].sum().item() for batch in make_loader(ds, 2, shuffle=False, num_workers=2)]
    s = [batch["audio"].sum().item() for batch in make_loader(ds, 2, shuffle=False, num_workers=0)]
    assert w == s


def test_dataset_missing_video_raises(tmp_path):
    feats = _feats(n=2)
    store = FeatureStore.build(tmp_path / "st", list(feats), feats.__getitem__)
    anns = {v: VideoAnnotation(v, "train", 1.0, []) for v in ["vid0", "vid1", "gone"]}
    with pytest.raises(KeyError, match="missing from the feature store"):
        FeatureDataset(store, anns, [], R)
    assert len(FeatureDataset(store, anns, [], R, subset="test")) == 0


def test_unav_to_llp_csvs_round_trips_through_read_llp(tmp_path):
    """The LLP view of dense AV annotations: train/val/test split by subset, AV events as identical audio and
    visual eval rows widened to whole seconds, read back by read_llp into HAN's segment matrix."""
    from models.data.llp import unav_to_llp_csvs

    anns = {"a": VideoAnnotation("a", "train", 10.0, [Segment(1.2, 3.5, "Dog")]),
            "b": VideoAnnotation("b", "validation", 10.0, [Segment(0.0, 2.0, "Cat")]),
            "c": VideoAnnotation("c", "test", 10.0, [Segment(2.5, 4.2, "Dog"), Segment(6.0, 7.0, "Violin_fiddle")])}
    paths = unav_to_llp_csvs(anns, tmp_path / "csv")
    assert sorted(p.name for p in paths.values()) == ["AVVP_eval_audio.csv", "AVVP_eval_visual.csv",
                                                      "AVVP_test_pd.csv", "AVVP_train.csv", "AVVP_val_pd.csv"]
    train = read_llp(paths["AVVP_train.csv"])
    assert {v: r["labels"] for v, r in train.items()} == {"a": ["Dog"]}
    # the training clips' events are known: their eval rows let stage 2's pseudo-labels be scored on train
    train = read_llp(paths["AVVP_train.csv"], paths["AVVP_eval_audio.csv"], paths["AVVP_eval_visual.csv"])
    assert train["a"]["audio"] == [Segment(1.0, 4.0, "Dog")]
    val = read_llp(paths["AVVP_val_pd.csv"], paths["AVVP_eval_audio.csv"], paths["AVVP_eval_visual.csv"])
    assert list(val) == ["b"] and val["b"]["audio"] == [Segment(0.0, 2.0, "Cat")]
    test = read_llp(paths["AVVP_test_pd.csv"], paths["AVVP_eval_audio.csv"], paths["AVVP_eval_visual.csv"])
    assert list(test) == ["c"] and sorted(test["c"]["labels"]) == ["Dog", "Violin_fiddle"]
    m = llp_segment_matrix(test["c"]["audio"], ["Dog", "Violin_fiddle"])
    np.testing.assert_array_equal(m[0], [0, 0, 1, 1, 1, 0, 0, 0, 0, 0])  # [2.5, 4.2] -> segments 2..4
    np.testing.assert_array_equal(m[1], [0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    assert test["c"]["audio"] == test["c"]["visual"]
    anns["a"].segments.append(Segment(4.0, 5.0, "Frying, food"))
    with pytest.raises(ValueError, match=r"labels \['Frying, food'\] contain a comma"):
        unav_to_llp_csvs(anns, tmp_path / "csv2")
