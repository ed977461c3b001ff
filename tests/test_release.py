"""Starting from released features: the UnAV-100 release layout over a slice of the real annotation file
(tests/data/unav100_annotations_slice.json), the label_id class map, the reference evaluator's input,
ActivityNet's subsets and tIoU set, the published tables, and the `reproduce_<table>` targets end to end."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_workflow import REPO, job_counts, smk

from extractors.recipes import get_recipe
from models.data.activitynet import read_activitynet
from models.data.annotations import Segment, VideoAnnotation, class_list, label_ids
from models.data.features import feature_paths, find_features
from models.data.unav import read_unav
from models.run.interchange import convert, unav_arrays, write_class_map
from models.run.metrics import compute_map, load_predictions_json, tious_for, write_predictions_json
from models.run.pipeline import checkpoint_classes
from models.run.runtime import CKPT_FORMAT

SLICE = Path(__file__).parent / "data" / "unav100_annotations_slice.json"
NO_FILES = "YjScrri_F7U"  # a train video with no feature file at all
NO_FLOW = "3cy7OWQIsWk"  # a test video whose flow file is missing
TINY_PYR = {"d_model": 16, "n_heads": 2, "tdm_dim": 4, "head_dim": 16, "dropout": 0.0, "pre_nms_topk": 100,
            "max_seg_num": 30}
TINY = {"dave-weak": TINY_PYR, "dave-full": TINY_PYR, "ccnet-weak": TINY_PYR,
        "ccnet-full": TINY_PYR, "avel-weak": {"hidden": 16, "region_dim": 8, "h_lstm": 8, "fc_dim": 8},
        "clasp": {"hidden_dim": 16, "n_global": 2, "n_local": 1, "n_windows": 2, "n_heads": 2},
        "mil": {"hidden_dim": 16}}


def n_steps(duration_s: float, fps: float = 25.0, stack: int = 24, step: int = 8) -> int:
    """Feature count of the reference extractor for a video of ``duration_s`` (docs/recipes.md "Windows")."""
    return (int(duration_s * fps) - (stack + 1)) // step + 1


def make_release(folder: Path, annotations: Path, t_cap: int = 48, seed: int = 0) -> None:
    """A UnAV-100 release folder for every annotated video (float64 I3D as the release stores it), except
    NO_FILES (nothing) and NO_FLOW (no flow file)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for vid, a in read_unav(annotations).items():
        t = min(n_steps(a.duration), t_cap)
        if vid == NO_FILES:
            continue
        np.save(folder / f"{vid}_rgb.npy", rng.standard_normal((t, 1024)))
        if vid != NO_FLOW:
            np.save(folder / f"{vid}_flow.npy", rng.standard_normal((t, 1024)))
        np.save(folder / f"{vid}_vggish.npy", rng.standard_normal((t + 1, 128)).astype(np.float32))


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("release")
    shutil.copy(SLICE, root / "unav100_annotations.json")
    make_release(root / "av_features", root / "unav100_annotations.json")
    return root / "av_features", root / "unav100_annotations.json"


def release_config(work: Path, features: Path, annotations: Path, **extra) -> None:
    cfg = {"datasets": {"unav": {
        "features": {"from": str(features), "layout": "unav_release"}, "recipe": "unav100",
        "recipe_overrides": {"t_max": 32}, "annotations": str(annotations),
        "train": {"epochs": 1, "batch_size": 4, "seed": 3}, "model_overrides": TINY, **extra}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))


# ------------------------------------------------------------------------------------ class map


def test_class_map_follows_label_id_of_the_real_file():
    anns = read_unav(SLICE)
    assert label_ids(anns) == {"man speaking": 0, "woman speaking": 1, "kid speaking": 2, "skateboarding": 36}
    assert class_list(anns) == ["man speaking", "woman speaking", "kid speaking", "skateboarding"]
    assert class_list(anns) != sorted(label_ids(anns))  # the old sorted-name order would swap 0..2


def test_class_map_conflicts_are_errors(tmp_path):
    def ann(*segs: Segment) -> dict[str, VideoAnnotation]:
        return {f"v{i}": VideoAnnotation(f"v{i}", "train", 9.0, [s]) for i, s in enumerate(segs)}

    with pytest.raises(ValueError, match="'dog' has label_id 3 in video 'v0' but 4 in video 'v1'"):
        label_ids(ann(Segment(0, 1, "dog", 3), Segment(0, 1, "dog", 4)))
    with pytest.raises(ValueError, match="label_id 3 names two labels"):
        label_ids(ann(Segment(0, 1, "dog", 3), Segment(0, 1, "cat", 3)))
    with pytest.raises(ValueError, match="have no label_id while others do"):
        label_ids(ann(Segment(0, 1, "dog", 3), Segment(0, 1, "cat")))
    db = json.loads(SLICE.read_text())
    first = next(iter(db["database"].values()))
    first["annotations"][0]["label_id"] = 99
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(db))
    with pytest.raises(ValueError, match=r"bad\.json: label"):
        read_unav(bad)
    assert label_ids(ann(Segment(0, 1, "dog"), Segment(0, 1, "cat"))) == {"cat": 0, "dog": 1}  # no ids: names


def test_checkpoint_classes_keeps_old_checkpoints_usable_and_rejects_other_classes(tmp_path):
    recipe = get_recipe("unav100")
    old = tmp_path / "old.pt"
    names = sorted(label_ids(read_unav(SLICE)))  # how checkpoints stored classes before label_id order
    torch.save({"format": CKPT_FORMAT, "classes": names}, old)
    assert checkpoint_classes(old, SLICE, recipe) == names
    other = tmp_path / "other.pt"
    torch.save({"format": CKPT_FORMAT, "classes": [*names[:-1], "dog barking"]}, other)
    with pytest.raises(ValueError, match=r"only in the checkpoint \['dog barking'\]"):
        checkpoint_classes(other, SLICE, recipe)


# ------------------------------------------------------------------------------------ features


def test_find_features_lists_what_is_missing(release):
    features, annotations = release
    ids = sorted(read_unav(annotations))
    found, missing = find_features(ids, features, "unav_release")
    assert set(missing) == {NO_FILES, NO_FLOW} and len(found) == len(ids) - 2
    assert missing[NO_FLOW] == f"no feature file {features / (NO_FLOW + '_flow.npy')}"
    assert missing[NO_FILES].count(".npy") == 3
    assert feature_paths("x", "r", "ours", "r21d", prefix="v_") == [Path("r/features/r21d/v_x.npy"),
                                                                     Path("r/features/vggish/v_x.npy")]


# ------------------------------------------------------------------------------------ interchange


def test_interchange_speaks_the_files_label_ids(tmp_path):
    preds = {"09pMJyKUdyI": [(1.0, 5.0, "woman speaking", 0.9), (2.0, 3.0, "skateboarding", 0.2)],
             "CSu8Bv3EY6o": [(0.5, 9.0, "man speaking", 0.7)], "-YakLAKrO8c": []}
    pj = tmp_path / "predictions.json"
    write_predictions_json(preds, pj)
    doc = json.loads(convert(pj, SLICE, tmp_path / "unav.json").read_text())
    # load_pred_seg_from_json reads database -> vid -> [{segment, label_id, scores}]
    ev = doc["database"]["09pMJyKUdyI"]
    assert [(e["segment"], e["label_id"], e["scores"]) for e in ev] == [([1.0, 5.0], 1, 0.9), ([2.0, 3.0], 36, 0.2)]
    assert doc["database"]["-YakLAKrO8c"] == []
    with open(convert(pj, SLICE, tmp_path / "eval_results.pkl"), "rb") as fh:
        cols = pickle.load(fh)
    assert cols["video-id"] == ["09pMJyKUdyI", "09pMJyKUdyI", "CSu8Bv3EY6o"]
    np.testing.assert_array_equal(cols["label"], [1, 36, 0])
    np.testing.assert_allclose(cols["t-end"], [5.0, 3.0, 9.0])
    # scoring the converted file with ids mapped back gives the same numbers as scoring ours
    names = {i: n for n, i in label_ids(read_unav(SLICE)).items()}
    back = {v: [(e["segment"][0], e["segment"][1], names[e["label_id"]], e["scores"]) for e in evs]
            for v, evs in doc["database"].items()}
    gt = read_unav(SLICE)
    assert compute_map(gt, back, subset="test")["avg"] == compute_map(gt, load_predictions_json(pj), subset="test")["avg"]
    with pytest.raises(ValueError, match=r"not in the annotation file: \['dog barking'\]"):
        unav_arrays({"v": [(0, 1, "dog barking", 0.5)]}, label_ids(gt))
    assert list(write_class_map(SLICE, tmp_path / "map.json").values()) == [0, 1, 2, 36]


# ------------------------------------------------------------------------------------ metrics, tables


def test_activitynet_avg_is_over_half_to_095():
    np.testing.assert_allclose(tious_for(get_recipe("activitynet")), np.arange(10) * 0.05 + 0.5)
    np.testing.assert_allclose(tious_for("unav100"), np.linspace(0.1, 0.9, 9))
    gt = {"v": [(0.0, 10.0, "a")]}
    m = compute_map(gt, {"v": [(0.0, 8.0, "a", 1.0)]}, tious=tious_for("activitynet"))  # tIoU 0.8
    assert m["avg"] == pytest.approx(0.7) and set(m["reported"]) == {"0.5", "0.6", "0.7", "0.8", "0.9", "avg"}


def test_published_tables_transcribed_and_their_models_exist():
    from models.run.pipeline import model_overrides

    pub = yaml.safe_load((REPO / "config" / "published.yaml").read_text())
    rows = {(name, r["method"], r.get("features", "")): r for name, t in pub["tables"].items() for r in t["rows"]}
    assert rows[("unav100", "CLASP (ours)", "")]["mAP"] == [29.6, 26.3, 23.0, 19.7, 15.8, 30.0]
    assert rows[("unav100", "CCNet (Zhou et al. 2025c)", "")]["mAP"][-1] == 26.9
    assert rows[("activitynet", "CLASP (ours)", "")]["mAP"] == [34.6, 29.0, 23.6, 17.6, 9.8, 21.3]
    assert rows[("unav100", "CCNet (ours)", "")]["mAP"] == [51.9, 47.2, 41.5, 34.1, 23.0, 49.2]
    assert len(pub["tables"]["unav100"]["rows"]) == 7 + 8 and len(pub["tables"]["activitynet"]["rows"]) == 4
    assert ("unav100", "PPAE (Gao, Chen, and Xu 2025)", "") in rows  # commas inside a name survive YAML
    for t in pub["tables"].values():
        for r in t["rows"]:
            assert set(r) <= {"paper", "table", "method", "task", "supervision", "features", "model", "mAP"}, r
            assert len(r["mAP"]) == 6 and r["paper"] in pub["papers"]
            if r["model"]:
                name, sup = model_overrides(r["model"])
                assert (sup.get("supervision") or "weak") == r["supervision"], r
    assert pub["tables"]["activitynet"]["train"]["clasp"] == {"n_windows": 16, "batch_size": 8}


def test_run_names_with_seeds_and_controls():
    from models.run.code_fingerprint import base_model
    from models.run.pipeline import parse_model_name, split_control, split_seed

    assert split_seed("ccnet-full_shuffled_seed12") == ("ccnet-full_shuffled", 12)
    assert split_seed("clasp") == ("clasp", None) and split_seed("clasp_seedx") == ("clasp_seedx", None)
    assert split_control("clasp_shuffled_seed1") == ("clasp", True) and split_control("clasp_seed1") == ("clasp", False)
    assert parse_model_name("ccnet-full_shuffled_seed2") == ("ccnet", "full")
    assert base_model("ccnet-full_shuffled_seed2") == base_model("ccnet") == "ccnet"
    # the builder is the parsers' inverse (models.run.names: the rules, compare and reproduce build names with it)
    from models.run.names import run_name

    assert run_name("ccnet-full", control=True, seed=2) == "ccnet-full_shuffled_seed2"
    assert run_name("clasp") == "clasp" and run_name("clasp", seed=0) == "clasp_seed0"
    for name in ("clasp", "clasp_shuffled", "clasp_seed3", "ccnet-weak_shuffled_seed12"):
        seed = split_seed(name)[1]
        model, control = split_control(name)
        assert run_name(model, control, seed) == name


def test_reproduce_table_mean_std_over_seeds_and_the_chance_line(tmp_path):
    """Three seeds: the md shows mean ± sample std beside the published row and the control beneath; the CSV
    has the mean row and each seed's; one seed (the default) gives the single row with its seed, no ±."""
    from models.run.compare import write_reproduce

    pub = yaml.safe_load((REPO / "config" / "published.yaml").read_text())
    table = pub["tables"]["unav100"]

    def met(avg: float) -> dict:
        return {"avg": avg / 100, "reported": {t: (avg + k) / 100 for k, t in enumerate(("0.5", "0.6", "0.7", "0.8", "0.9"))},
                "n_videos": 4}

    avgs = {"clasp": 10.0, "clasp_seed1": 12.0, "clasp_seed2": 17.0, "clasp_shuffled": 2.0,
            "clasp_shuffled_seed1": 3.0, "clasp_shuffled_seed2": 4.0}
    metrics = {run: met(a) for run, a in avgs.items()}
    groups = {"clasp": {"ours": {0: "clasp", 1: "clasp_seed1", 2: "clasp_seed2"},
                        "control": {0: "clasp_shuffled", 1: "clasp_shuffled_seed1", 2: "clasp_shuffled_seed2"}}}
    runs = {run: {"info": {"seed": int(run[-1]) if "seed" in run else 0}, "overrides": {}} for run in avgs}
    df = write_reproduce(tmp_path / "r.md", tmp_path / "r.csv", "unav100", "unav", table, pub["papers"], metrics, runs,
                         {}, groups)
    md = (tmp_path / "r.md").read_text()
    sd = float(np.std([10.0, 12.0, 17.0], ddof=1))  # 3.61
    assert f"| ours: `clasp` | 13.0 ± {sd:.1f} | 14.0 ± {sd:.1f} |" in md and md.count("ours: `clasp`") == 1
    assert "| chance: `clasp_shuffled` (shuffled labels) | 3.0 ± 1.0 | 4.0 ± 1.0 |" in md
    assert md.rstrip().endswith("| `clasp_shuffled_seed2` | 2 |" + "  |" * 8 + " `{}` | 4 (0) |")
    assert "over 3 seeds (0, 1, 2" in md and "| 29.6 | 26.3 | 23.0 | 19.7 | 15.8 | 30.0 |  |" in md
    assert "published (`ccnet-full` not run)" in md
    csv = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    ours = csv[(csv["source"] == "ours")]
    assert list(ours["seed"].astype(str)) == ["", "0", "1", "2"] and list(ours["n_seeds"].astype(int)) == [3, 1, 1, 1]
    assert list(ours["Avg"]) == [13.0, 10.0, 12.0, 17.0] and float(ours["std_Avg"].iloc[0]) == pytest.approx(sd, abs=0.01)
    assert list(csv[csv["source"] == "control"]["Avg"]) == [3.0, 2.0, 3.0, 4.0]
    assert len(df) == 15 + 4 + 4
    one = write_reproduce(tmp_path / "1.md", tmp_path / "1.csv", "unav100", "unav", table, pub["papers"],
                          {"clasp": met(10.0)}, {"clasp": runs["clasp"]}, {}, {"clasp": {"ours": {0: "clasp"}}})
    assert len(one) == 16 and one[one["source"] == "ours"][["seed", "n_seeds"]].values.tolist() == [["0", 1]]
    assert "| ours: `clasp` | 10.0 | 11.0 | 12.0 | 13.0 | 14.0 | 10.0 | 1 |" in (tmp_path / "1.md").read_text()


# ------------------------------------------------------------------------------------ workflow


def test_features_only_dataset_dag_and_missing_list(tmp_path, release):
    features, annotations = release
    release_config(tmp_path, features, annotations, models=["mil"], reproduce="unav100")
    out = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1").stdout
    counts = job_counts(out)
    assert "media" not in counts and "features_i3d" not in counts  # no video, no extraction
    assert counts["feature_store"] == 1 and counts["reproduce"] == 1
    # mil + the table's 6 + the label-shuffled controls of its 4 weak models (the chance lines)
    assert counts["train"] == counts["evaluate"] == 11 and counts["unav_results"] == 6
    rows = (tmp_path / "logs" / "unav" / "missing_features.tsv").read_text().splitlines()
    assert rows[0] == "file\treason" and sorted(r.split("\t")[0] for r in rows[1:]) == sorted([NO_FILES, NO_FLOW])
    only = job_counts(smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", "reproduce_unav100").stdout)
    assert only["train"] == 10 and "compare" not in only
    release_config(tmp_path, features, annotations, models=["mil"],
                   reproduce={"table": "unav100", "controls": False, "seeds": [3, 4]})
    seeds = job_counts(smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", "reproduce_unav100").stdout)
    assert seeds["train"] == seeds["evaluate"] == 12 and seeds["unav_results"] == 12  # 6 models x 2 seeds
    no_table = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", "reproduce_activitynet", check=False)
    assert no_table.returncode != 0 and "no dataset entry says `reproduce: activitynet`" in no_table.stdout + no_table.stderr


def test_schema_needs_videos_or_features(tmp_path, release):
    features, annotations = release
    release_config(tmp_path, features, annotations, videos=str(tmp_path))
    bad = smk(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", check=False)
    assert bad.returncode != 0
    assert "datasets.unav: needs exactly one of `videos` or `features` + `annotations`" in bad.stdout + bad.stderr


def test_reproduce_unav100_from_a_release_folder(tmp_path, release):
    """The one command a user with the real release runs, on the generated release: the store, the models
    (two of the six here, one weak and one fully supervised, to stay fast; the DAG test has all six) trained
    and evaluated, their evaluator inputs, and the table beside the papers'."""
    features, annotations = release
    release_config(tmp_path, features, annotations, reproduce={"table": "unav100", "models": ["clasp", "ccnet-full"]})
    smk(tmp_path, "--cores", "2", "--resources", "gpu=1", "--workflow-profile", "none", "reproduce_unav100")
    res = tmp_path / "results" / "unav"
    index = json.loads((res / "store" / "index.json").read_text())
    assert len(index["video_ids"]) == 12 and index["meta"]["annotated_without_features"] == [NO_FLOW, NO_FILES]
    assert index["visual_dim"] == 2048 and index["audio_dim"] == 128
    md = (res / "reproduce.md").read_text()
    assert "| clasp Table 1 | CLASP (ours) | weak | published | 29.6 | 26.3 | 23.0 | 19.7 | 15.8 | 30.0 |" in md
    assert "| ccnet Table 1 | CCNet (ours) | full | published | 51.9 | 47.2 | 41.5 | 34.1 | 23.0 | 49.2 |" in md
    assert "| clasp Table 1 | CLASP (ours) | weak | ours: `clasp` |" in md
    assert "| clasp Table 1 | DAVE (Geng et al. 2023) | weak | published (`dave-weak` not run) |" in md
    assert "| clasp Table 1 | CLASP (ours) | weak | chance: `clasp_shuffled` (shuffled labels) |" in md
    assert "ccnet-full_shuffled" not in md  # controls: the weak models only
    csv = pd.read_csv(res / "reproduce.csv", keep_default_na=False)
    assert len(csv) == 15 + 2 + 1 and set(csv[csv["source"] != "published"]["seed"].astype(str)) == {"3"}
    for model in ("clasp", "ccnet-full"):
        met = json.loads((res / "models" / model / "metrics.json").read_text())
        assert met["n_videos"] == 4 and met["n_videos_without_features"] == 1  # NO_FLOW's GT counts as missed
        cfg = json.loads((res / "models" / model / "config.json").read_text())
        assert cfg["seed"] == 3 and cfg["epochs"] == 1
        assert f"| `{model}` | 3 | 1 | 4 |" in md  # seed, epochs, batch recorded
        ids = {e["label_id"] for evs in json.loads((res / "models" / model / "unav_results.json").read_text())
               ["database"].values() for e in evs}
        assert ids <= {0, 1, 2, 36}


def test_reproduce_with_seeds_one_job_per_seed_and_mean_std(tmp_path, release):
    """``seeds: [3, 5]`` (the dataset's train.seed is 3): CLASP and its shuffled control trained once per seed,
    each run with its own seed; the table's row is their mean ± std and the CSV has each seed."""
    features, annotations = release
    release_config(tmp_path, features, annotations, reproduce={"table": "unav100", "models": ["clasp"], "seeds": [3, 5]})
    smk(tmp_path, "--cores", "2", "--resources", "gpu=1", "--workflow-profile", "none", "reproduce_unav100")
    res = tmp_path / "results" / "unav"
    for run, seed, shuffled in (("clasp", 3, False), ("clasp_seed5", 5, False), ("clasp_shuffled", 3, True),
                                ("clasp_shuffled_seed5", 5, True)):
        cfg = json.loads((res / "models" / run / "config.json").read_text())
        assert (cfg["seed"], cfg["shuffle_labels"]) == (seed, shuffled), run
    assert {p.parent.name for p in (res / "models").glob("*/unav_results.json")} == {"clasp", "clasp_seed5"}
    csv = pd.read_csv(res / "reproduce.csv", keep_default_na=False)
    ours = csv[csv["source"] == "ours"]
    assert list(ours["seed"].astype(str)) == ["", "3", "5"] and list(ours["runs"])[0] == "clasp clasp_seed5"
    assert float(ours["Avg"].iloc[0]) == pytest.approx(float(ours["Avg"].iloc[1:].mean()), abs=0.006)
    avg = [100 * json.loads((res / "models" / r / "metrics.json").read_text())["avg"] for r in ("clasp", "clasp_seed5")]
    assert float(ours["std_Avg"].iloc[0]) == pytest.approx(float(np.std(avg, ddof=1)), abs=0.006)
    md = (res / "reproduce.md").read_text()
    mean, sd = np.mean(avg), np.std(avg, ddof=1)
    assert f"| {mean:.1f} ± {sd:.1f} | 2 |" in md and "over 2 seeds (3, 5;" in md
    assert "| `clasp_shuffled_seed5` | 5 |" in md


def make_activitynet(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """ActivityNet-format annotations (training/validation/testing, no label_id, test without annotations) and
    features in our layout (R(2+1)D 512 + VGGish 128, one step per second), file names with the v_ prefix."""
    rng = np.random.default_rng(seed)
    classes = ["Ballet", "Fun sliding down", "Archery"]
    db = {}
    for i in range(10):
        subset = ["training"] * 5 + ["validation"] * 3 + ["testing"] * 2
        dur = 20.0 + 3 * i
        anns = [] if subset[i] == "testing" else [
            {"segment": [2.0 + i % 3, 9.0 + i % 4], "label": classes[i % 3]}]
        db[f"an{i:02d}-x"] = {"subset": subset[i], "duration": dur, "resolution": "640x360",
                              "url": f"https://www.youtube.com/watch?v=an{i:02d}-x", "annotations": anns}
    ann = root / "activity_net.v1-3.min.json"
    ann.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": db}))
    feats = root / "anet_run"
    for kind, dim in (("r21d", 512), ("vggish", 128)):
        (feats / "features" / kind).mkdir(parents=True)
        for vid, v in db.items():
            np.save(feats / "features" / kind / f"v_{vid}.npy",
                    rng.standard_normal((math.floor(v["duration"]), dim)).astype(np.float32))
    return feats, ann


def test_activitynet_end_to_end(tmp_path):
    feats, ann = make_activitynet(tmp_path)
    anns = read_activitynet(ann)
    assert {a.subset for a in anns.values()} == {"train", "validation", "test"}
    assert class_list(anns) == ["Archery", "Ballet", "Fun sliding down"]  # no label_id: sorted names
    tiny = {k: v for k, v in TINY.items() if k != "clasp"}
    tiny["clasp"] = {"hidden_dim": 16, "n_global": 2, "n_local": 1, "n_heads": 2}  # M and batch from the table
    cfg = {"datasets": {"anet": {
        "features": {"from": str(feats), "layout": "ours", "prefix": "v_"}, "recipe": "activitynet",
        "recipe_overrides": {"t_max": 32}, "annotations": str(ann),
        "reproduce": {"table": "activitynet", "models": ["clasp"]},
        "train": {"epochs": 1, "seed": 0}, "model_overrides": tiny}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    smk(tmp_path, "--cores", "2", "--resources", "gpu=1", "--workflow-profile", "none", "reproduce_activitynet")
    res = tmp_path / "results" / "anet"
    run = json.loads((res / "models" / "clasp" / "config.json").read_text())
    assert run["batch_size"] == 8 and run["config"]["n_windows"] == 16  # CLASP's ActivityNet recipe
    assert run["n_val"] == 3
    met = json.loads((res / "models" / "clasp" / "metrics.json").read_text())
    assert met["n_videos"] == 3  # validation: the testing split has no annotations and is not scored
    assert met["tious"] == pytest.approx([0.5 + 0.05 * k for k in range(10)])
    md = (res / "reproduce.md").read_text()
    assert "| clasp Table 2 | CLASP (ours) | weak | published | 34.6 | 29.0 | 23.6 | 17.6 | 9.8 | 21.3 |" in md
    assert not list((res / "models" / "clasp").glob("unav_results.json"))  # no label_id: no UnAV ids to speak
