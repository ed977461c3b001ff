"""bench/fullsize_bench.py's release: the real annotation file's videos (a seeded fraction of each subset)
with their real lengths, in the public UnAV-100 layout the workflow reads (`features: {layout:
unav_release}`), and the kept videos' annotation entries unchanged. The Snakemake run itself is covered by
tests/test_release.py's reproduce tests."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from extractors.recipes import get_recipe
from models.data.features import find_features, load_video_features
from models.data.planted_real import select_fraction, steps_for_duration
from models.data.unav import read_unav

REPO = Path(__file__).resolve().parents[1]
ANNOTATIONS = REPO / "tests" / "data" / "unav100_annotations.json.gz"


def load_bench():
    spec = importlib.util.spec_from_file_location("fullsize_bench", REPO / "bench" / "fullsize_bench.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fullsize_bench"] = mod  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_release_has_the_annotation_files_videos_and_lengths(tmp_path):
    bench = load_bench()
    stats = bench.build_release(ANNOTATIONS, tmp_path / "rel", fraction=0.001, seed=4)
    full = read_unav(ANNOTATIONS)
    want = select_fraction(full, 0.001, 4)
    # 0.1 % of 6,489 / 2,134 / 2,167 videos, rounded, at least one per subset
    assert stats.subsets == {"test": 2, "train": 6, "validation": 2} and stats.videos == len(want) == 10
    with gzip.open(ANNOTATIONS, "rt", encoding="utf-8") as fh:
        original = json.load(fh)
    written = json.loads((tmp_path / "rel" / "unav100_annotations.json").read_text())
    assert written["database"] == {v: original["database"][v] for v in want}  # entries unchanged, file order
    assert list(written["database"]) == [v for v in original["database"] if v in want]
    assert {k: v for k, v in written.items() if k != "database"} == {k: v for k, v in original.items()
                                                                     if k != "database"}
    feats = tmp_path / "rel" / "av_features"
    assert sorted(p.name for p in feats.iterdir()) == sorted(f"{v}_{k}.npy" for v in want
                                                             for k in ("rgb", "flow", "vggish"))
    found, missing = find_features(sorted(want), feats, "unav_release")
    assert missing == {} and sorted(found) == sorted(want)
    recipe = get_recipe("unav100")
    total = 0
    for vid, ann in want.items():
        t = steps_for_duration(ann.duration, recipe)
        rgb, flow, vgg = (np.load(feats / f"{vid}_{k}.npy") for k in ("rgb", "flow", "vggish"))
        assert rgb.shape == flow.shape == (t, 1024) and rgb.dtype == flow.dtype == np.float64, vid  # as released
        assert vgg.shape == (t, 128) and vgg.dtype == np.float32, vid
        audio, visual = load_video_features(vid, feats, "unav_release")
        assert audio.shape == (t, 128) and visual.shape == (t, 2048)
        total += t
    assert stats.steps == total and stats.bytes == sum(p.stat().st_size for p in feats.iterdir())
    # a 60 s video has 185 steps (docs/recipes.md); the fraction keeps lengths as in the full file
    assert steps_for_duration(60.0, recipe) == 185


def test_config_is_the_users_reproduce_entry(tmp_path):
    bench = load_bench()
    args = bench.argparse.Namespace(seeds=[0, 1, 2], epochs=2, batch_size=None, lr=1e-3, models=["clasp"],
                                    no_controls=False, max_timelines=20, width=32)
    cfg = yaml.safe_load(bench.write_config(tmp_path, tmp_path / "rel", args).read_text())["datasets"]["unav"]
    assert cfg["reproduce"] == {"table": "unav100", "models": ["clasp"], "seeds": [0, 1, 2], "controls": True}
    assert cfg["features"] == {"from": str(tmp_path / "rel" / "av_features"), "layout": "unav_release"}
    assert cfg["train"] == {"seed": 0, "epochs": 2, "lr": 1e-3} and cfg["evaluate"] == {"max_timelines": 20}
    assert cfg["model_overrides"] == {"clasp": {"hidden_dim": 32}}


def test_bench_reads_the_plotting_time_that_evaluate_logs(tmp_path, caplog):
    """The evaluation's plotting share comes from these log lines: a reworded message must fail here."""
    import logging
    from types import SimpleNamespace

    from models.run.metrics import write_predictions_json
    from models.run.predict import plot_dataset_timelines

    bench = load_bench()
    preds = tmp_path / "predictions.json"
    write_predictions_json({}, preds)
    ds = SimpleNamespace(video_ids=["b", "a", "c"], annotations={})
    with caplog.at_level(logging.INFO):
        assert plot_dataset_timelines(preds, ds, tmp_path / "timelines", get_recipe("unav100"), max_videos=0) == 0
    drawn, total, seconds = bench.plot_time(caplog.text)
    assert (drawn, total) == (0, 3) and seconds >= 0
    assert bench.plot_time("no plotting here") is None
