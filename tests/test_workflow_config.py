"""The logic behind workflow/rules/common.smk's input functions, without Snakemake: defaults named once, the
reproduce tables (merge, seeds, runs), feature outputs and arguments, memoised discovery and LLP splits, and
the shell fragments of the avvp/LLP jobs (models.run.workflow_config, models.avvp.workflow_config)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from snakemake.exceptions import WorkflowError

from extractors import discovery
from extractors.recipes import get_recipe
from models.avvp import workflow_config as avvp_config
from models.avvp.workflow_config import Benchmarks, check_sources, llp_feature_shell, shuffle_flag
from models.run import workflow_config
from models.run.workflow_config import Project, merge_reproduce_train, metrics_files, reproduce_spec, seed_of

REPO = Path(__file__).resolve().parents[1]
SLICE = REPO / "tests" / "data" / "unav100_annotations_slice.json"


def project(datasets: dict, **config) -> Project:
    return Project({"datasets": datasets, **config}, REPO)


def test_defaults_are_named_once() -> None:
    assert seed_of({}) == workflow_config.DEFAULT_SEED == 0 and seed_of({"seed": 7}) == 7
    p = project({"d": {"recipe": "demo", "train": {"seed": 4}}, "e": {"recipe": "demo"}})
    assert p.train_seed("d") == 4 and p.train_seed("e") == 0
    assert p.recipe_json("d") == json.dumps(get_recipe("demo").to_dict(), sort_keys=True)
    assert p.recipe("d") is p.recipe("d")  # memoised: one Recipe per dataset and invocation
    b = Benchmarks({"avvp": {"x": {"llp": {"weights": "random"}}}}, p)
    assert b.common_args("x") == "--weights random --weights-root resources/weights --clip-model ViT-L-14 --seed 0"
    assert b.llp_setting("x", "visual") == "resnet152_r21d" and b.dense_t_max("x") == avvp_config.DENSE_T_MAX


def test_an_unregistered_visual_extractor_names_the_dataset() -> None:
    p = project({"d": {"recipe": "demo", "recipe_overrides": {"visual": "nope"}}})
    with pytest.raises(WorkflowError, match="dataset 'd': visual extractor 'nope' is not registered"):
        p.recipe("d")


def test_reproduce_table_fields_merge_under_the_datasets_own() -> None:
    datasets = {"a": {"reproduce": "activitynet", "model_overrides": {"clasp": {"batch_size": 2}}},
                "b": {"reproduce": {"table": "missing"}}, "c": {}}
    merge_reproduce_train(datasets, {"activitynet": {"train": {"clasp": {"n_windows": 16, "batch_size": 8}}}})
    assert datasets["a"]["model_overrides"] == {"clasp": {"n_windows": 16, "batch_size": 2}}  # the dataset's wins
    assert "model_overrides" not in datasets["b"] and datasets["c"] == {}
    assert reproduce_spec({"reproduce": "t"}) == {"table": "t", "models": None, "seeds": None, "controls": True}
    # at construction, before any job reads the train spec (its param)
    p = project({"anet": {"recipe": "activitynet", "reproduce": "activitynet"}})
    assert json.loads(p.train_spec("anet", "clasp_seed3"))["model_overrides"] == {"n_windows": 16, "batch_size": 8}


def test_reproduce_runs_one_per_seed_controls_for_weak_models_only() -> None:
    p = project({"u": {"recipe": "unav100", "train": {"seed": 3},
                       "reproduce": {"table": "unav100", "models": ["ccnet-full", "clasp"], "seeds": [3, 4]}}})
    assert p.reproduce_models("u") == ["clasp", "ccnet-full"]  # the table's row order
    assert p.reproduce_runs("u") == {
        "clasp": {"ours": {3: "clasp", 4: "clasp_seed4"}, "control": {3: "clasp_shuffled", 4: "clasp_shuffled_seed4"}},
        "ccnet-full": {"ours": {3: "ccnet-full", 4: "ccnet-full_seed4"}}}
    assert p.reproduce_run_names("u", "ours") == ["clasp", "clasp_seed4", "ccnet-full", "ccnet-full_seed4"]
    assert json.loads(p.train_spec("u", "clasp_shuffled_seed4"))["seed"] == 4
    assert metrics_files("u", ["clasp"]) == ["results/u/models/clasp/metrics.json"]
    wrong = project({"u": {"recipe": "demo", "reproduce": "unav100"}})
    with pytest.raises(WorkflowError, match="table 'unav100' was measured with recipe 'unav100'"):
        wrong.reproduce_table("u")
    unknown = project({"u": {"recipe": "unav100", "reproduce": {"table": "unav100", "models": ["mil"]}}})
    with pytest.raises(WorkflowError, match=r"reproduce.models \['mil'\] are not models of table"):
        unknown.reproduce_models("u")


def test_feature_rules_outputs_constraints_and_arguments() -> None:
    p = project({"a.b": {"recipe": "demo"}, "act": {"recipe": "activitynet"},
                 "rel": {"recipe": "demo", "features": {"from": "x"}, "annotations": "a.json"}},
                keep_flow=True, extractor_modules=[])
    assert p.datasets_with_visual("i3d") == r"a\.b" and p.datasets_with_visual("nothing") == "(?!)"
    assert {"flow", "flow_provenance"} <= set(p.feature_outputs("i3d"))
    assert "flow" not in p.feature_outputs("r21d")  # R(2+1)D reads no flow
    flow = "results/d/flow/it's.npz"
    assert p.extra_feature_args(flow) == f"--flow-out {shlex.quote(flow)}" == "--flow-out 'results/d/flow/it'\"'\"'s.npz'"
    assert p.extra_feature_args(None) == ""
    assert p.store_source("a.b") == {"root": "results/a.b", "layout": "ours", "prefix": ""}
    assert p.store_source("rel") == {"root": "x", "layout": "ours", "prefix": ""}


def test_discovery_is_memoised_and_waits_for_the_demo(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v").mkdir()
    calls, waiting = [], [True]

    def wait(ds: str) -> None:
        if waiting[0]:
            raise RuntimeError("checkpoint not run yet")

    def fake_discover(folder, *args, **kwargs):
        calls.append(folder)
        return discovery.Discovery(accepted={"a": folder / "a.mp4"}, rejected={"b.mp4": "empty"})

    monkeypatch.setattr(discovery, "discover", fake_discover)
    p = Project({"datasets": {"d": {"recipe": "demo", "videos": "v", "generate_demo": {}}}}, REPO,
                wait_for_demo=wait, is_main_process=False)
    with pytest.raises(RuntimeError):
        p.videos("d")
    assert calls == []  # nothing probed, nothing memoised, until the generator has run
    waiting[0] = False
    assert list(p.videos("d")) == ["a"] and p.rejected("d") == {"b.mp4": "empty"}
    p.videos("d"), p.feature_files("d"), p.record_files("d")
    assert len(calls) == 1  # every input function asks; the folder is scanned once
    assert p.feature_files("d") == ["results/d/features/i3d/a.npy", "results/d/features/vggish/a.npy"]
    assert (tmp_path / "logs/d/rejected_videos.tsv").exists()


def test_avvp_sources_data_and_stage_arguments() -> None:
    with pytest.raises(WorkflowError, match="avvp.p: dense data from both planted and dense_from; keep one"):
        check_sources({"p": {"planted": True, "dense_from": "x"}})
    b = Benchmarks({"avvp": {"p": {"planted": True, "modes": ["video"]},
                             "n": {"train": "t r.npz", "test": "te.npz", "ear": {"select": "last"}},
                             "m": {"train": "t.npz", "test": "te.npz", "val": "v a.npz"},
                             "l": {"llp": {"annotations": "csv", "weights": "random"}}}}, project({}))
    assert b.planted_names == ["p"] and b.llp_names == ["l"] and b.dense_names == []
    assert b.data("p", "val") == "data/avvp/p/val.npz" and b.data("n", "train") == "t r.npz"
    with pytest.raises(WorkflowError, match="avvp.n: stage 3 selects its epoch on a validation split"):
        b.data("n", "val")
    assert b.stage3_args("n", "shuffled") == {"pseudo": "--pseudo results/avvp/n/stage2/shuffled/pseudo_labels.npz",
                                              "val": "", "banner": "", "out": "results/avvp/n/shuffled"}
    assert b.stage3_args("p", "video")["banner"] == "--banner 'PLANTED BENCHMARK: synthetic features, not LLP'"
    assert b.stage3_args("l", "pseudo")["val"] == "--val data/avvp/l/val.npz"
    assert b.stage3_args("m", "video")["val"] == "--val 'v a.npz'"  # a configured path, quoted
    assert b.banner("l").startswith("WEIGHTS: RANDOM") and b.stage2_eval_args("p") == (
        "--test data/avvp/p/test.npz --val data/avvp/p/val.npz")
    assert b.stage1_log("p") == [] and b.stage1_log("l") == "results/avvp/l/stage1/generator.json"
    assert shuffle_flag("shuffled") == "--shuffle-labels" and shuffle_flag("real") == ""
    assert b.unless_generator("p", "--no-generator") == "--no-generator" and b.unless_generator("l", "x") == ""
    assert not b.split_has_gt("l", "train") and b.eval_csvs("l", "train") == []
    assert b.eval_args("l", "train") == "" and b.eval_csvs("l", "test") == ["csv/AVVP_eval_audio.csv",
                                                                          "csv/AVVP_eval_visual.csv"]
    assert b.split_csvs("l") == ["csv/AVVP_train.csv", "csv/AVVP_val_pd.csv", "csv/AVVP_test_pd.csv"]


def test_llp_splits_from_a_unav_dataset_are_read_once(monkeypatch) -> None:
    p = project({"u": {"recipe": "unav100", "annotations": str(SLICE)}})
    ann = json.loads(SLICE.read_text())["database"]
    usable = sorted(ann)[1:]  # the first one has no usable clip
    monkeypatch.setattr(p, "videos", lambda ds: {v: Path(f"{v}.mp4") for v in usable})
    b = Benchmarks({"avvp": {"x": {"llp": {"from_dataset": "u"}}}}, p)
    reads = []
    monkeypatch.setattr(b, "_read_split", lambda name, split, read=b._read_split: reads.append(split) or read(name, split))
    for split, subset in (("train", "train"), ("val", "validation"), ("test", "test")):
        assert b.split_videos("x", split) == [v for v, a in ann.items() if a["subset"] == subset and v in usable]
    b.clips("x"), b.split_videos("x", "train")
    assert reads == ["train", "val", "test"]
    assert b.csv("x", "train_csv") == "data/avvp/x/csv/AVVP_train.csv" and b.source_annotations("x") == str(SLICE)
    # from a UnAV-format entry every split has segment ground truth, the training split too (stage 2's row)
    assert b.split_has_gt("x", "train") and b.eval_csvs("x", "train") == [
        "data/avvp/x/csv/AVVP_eval_audio.csv", "data/avvp/x/csv/AVVP_eval_visual.csv"]
    assert b.eval_args("x", "train") == ("--eval-audio-csv data/avvp/x/csv/AVVP_eval_audio.csv "
                                         "--eval-visual-csv data/avvp/x/csv/AVVP_eval_visual.csv")
    with pytest.raises(WorkflowError, match="avvp.y.llp.from_dataset: 'nope' is not a dataset with annotations"):
        Benchmarks({"avvp": {"y": {"llp": {"from_dataset": "nope"}}}}, p).source_dataset("y")


def test_llp_feature_shell_takes_the_device_as_a_param() -> None:
    shell = llp_feature_shell("benchmarks/avvp/{wildcards.llp:q}/features")
    assert "--record benchmarks/avvp/{wildcards.llp:q}/features/{wildcards.vid:q}.worker.json" in shell
    # a param (common.smk `untracked`), not a workflow global: `snakemake --lint` stays clean
    assert "--device {params.device} > {log:q} 2>&1" in shell and "{threads}" in shell and "DEVICE" not in shell


def test_an_unknown_dataset_says_so_and_lists_the_configured_ones() -> None:
    p = project({"b": {"recipe": "demo"}, "a": {"recipe": "demo"}})
    with pytest.raises(WorkflowError, match=r"unknown dataset 'typo' in a target .*datasets in the config: a, b"):
        p.datasets["typo"]
    assert "typo" not in p.datasets and p.datasets.get("typo") is None  # membership and .get do not raise
    with pytest.raises(WorkflowError, match="datasets in the config: none"):
        project({}).datasets["x"]


def test_cluster_names_reach_both_discoveries(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    seen = []

    def fake_discover(folder, *args, **kwargs):
        seen.append(kwargs["cluster_names"])
        return discovery.Discovery(accepted={"a": folder / "a.mp4"}, rejected={})

    monkeypatch.setattr(discovery, "discover", fake_discover)
    for given, want in (({}, False), ({"cluster_names": True}, True)):
        p = project({"d": {"recipe": "demo", "videos": "v"}}, **given)
        p.videos("d")
        Benchmarks({"avvp": {"x": {"llp": {"videos": "clips"}}}}, p).llp_videos("x")
        assert seen[-2:] == [want, want]


def test_pages_pseudo_labels_and_predict_with() -> None:
    assert workflow_config.metrics_pages("d", ["mil", "mil_shuffled"]) == [
        "results/d/models/mil/metrics.html", "results/d/models/mil_shuffled/metrics.html"]
    p = project({"demo": {"recipe": "demo", "generate_demo": {}, "models": ["mil"]},
                 "real": {"recipe": "demo", "models": ["mil"]},
                 "new": {"recipe": "demo", "predict_with": {"dataset": "demo", "model": "mil"}},
                 "new2": {"recipe": "demo", "predict_with": {"dataset": "real", "model": "mil"}}})
    assert json.loads(p.predict_with_json("new")) == {"dataset": "demo", "model": "mil", "synthetic": True,
                                                      "checkpoint": "results/demo/models/mil/best.pt"}
    assert json.loads(p.predict_with_json("new2"))["synthetic"] is False and p.predict_with_json("real") == "null"
    b = Benchmarks({"avvp": {"v": {"modes": ["video"]}, "q": {}}}, p)
    assert b.metrics_pages("q") == ["results/avvp/q/pseudo/metrics.html", "results/avvp/q/video/metrics.html"]
    assert b.train_pseudo_labels("v") == [] and b.train_pseudo_labels("q") == [
        "results/avvp/q/stage2/real/pseudo_labels.npz"]
