"""docs/extending.md, "Add an extractor", followed to the letter: its code block written as a file in a
temporary directory, its config lines merged into a tiny dataset's config, and `snakemake` run on two
generated clips; the declaration's contract (width check, names) checked directly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from extractors import registry
from extractors.extract import run_stage
from extractors.recipes import get_recipe
from extractors.synthetic_videos import make_demo_dataset
from tests.test_workflow import job_counts, smk

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Add an extractor"


def doc_section() -> str:
    """The section of docs/extending.md, so the doc and this test cannot drift."""
    text = (REPO / "docs" / "extending.md").read_text(encoding="utf-8")
    assert SECTION in text, f"no {SECTION!r} section in docs/extending.md"
    return re.split(r"^## ", text.split(SECTION, 1)[1], flags=re.M)[0]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", doc_section(), flags=re.S | re.M)


def mean_colours(mp4: Path, stack: int, step: int) -> np.ndarray:
    """The expected feature, computed another way: every frame decoded at once, windows by index."""
    cap, frames = cv2.VideoCapture(str(mp4)), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr[..., ::-1].astype(np.float64))
    cap.release()
    n = (len(frames) - stack) // step + 1
    return np.array([np.mean(frames[t * step:t * step + stack], axis=(0, 1, 2)) / 255 for t in range(n)])


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """The doc's extractor file and config, in a fresh working directory with two 3 s clips."""
    [code] = blocks("python")
    [config_lines] = blocks("yaml")
    cfg = yaml.safe_load(config_lines)
    module = tmp_path / cfg["extractor_modules"][0]
    module.parent.mkdir(parents=True)
    module.write_text(code)
    make_demo_dataset(tmp_path / "data", n_videos=2, duration_s=3.0, seed=1, size=(64, 48))
    [ds] = cfg["datasets"]
    cfg["datasets"][ds] = {"videos": "data/videos", "recipe": "demo", "annotations": "data/annotations.json",
                           **cfg["datasets"][ds]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def test_doc_toy_extractor_runs_through_snakemake(toy: Path) -> None:
    cfg = yaml.safe_load((toy / "config.yaml").read_text())
    [ds] = cfg["datasets"]
    name = cfg["datasets"][ds]["recipe_overrides"]["visual"]
    vids = sorted(p.stem for p in (toy / "data" / "videos").glob("*.mp4"))
    targets = [f"results/{ds}/features/{name}/{v}.npy" for v in vids] + [f"results/{ds}/store"]
    dry = smk(toy, "--cores", "1", *targets, "-n", "--workflow-profile", "none").stdout
    assert job_counts(dry) == {"media": 2, f"features_{name}": 2, "feature_store": 1}
    smk(toy, "--cores", "2", *targets, "--workflow-profile", "none", "--resources", "gpu=1")
    r = get_recipe("demo")
    for v in vids:
        feats = np.load(toy / "results" / ds / "features" / name / f"{v}.npy")
        want = mean_colours(toy / "results" / ds / "media" / f"{v}.mp4", r.stack, r.step)
        assert feats.dtype == np.float32 and feats.shape == want.shape and want.shape[1] == 3
        np.testing.assert_allclose(feats, want, atol=1e-5)
        prov = json.loads((toy / "results" / ds / "features" / name / f"{v}.json").read_text())
        assert prov["extractor"] == name and prov["recipe"]["visual"] == name and prov["dim"] == 3
        assert np.load(toy / "results" / ds / "features" / "vggish" / f"{v}.npy").shape[1] == 128
    index = json.loads((toy / "results" / ds / "store" / "index.json").read_text())
    assert index["meta"]["visual"] == name and index["visual_dim"] == 3 and len(index["video_ids"]) == 2


def test_unregistered_visual_extractor_is_named_in_the_error(toy: Path) -> None:
    cfg = yaml.safe_load((toy / "config.yaml").read_text())
    del cfg["extractor_modules"]
    (toy / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(toy, "-n", "--workflow-profile", "none", "--cores", "1", check=False)
    assert out.returncode != 0 and "visual extractor 'meancolor' is not registered" in out.stdout + out.stderr


def test_declared_width_is_checked_and_names_are_unique(tmp_path: Path) -> None:
    wrong = registry.Extractor("wrongwidth", "frames", 5, lambda inputs: (np.zeros((2, 3), np.float32), {}))
    registry.register(wrong)
    try:
        with pytest.raises(ValueError, match=r"declares \(T, 5\)"):
            run_stage("wrongwidth", mp4=tmp_path / "x.mp4", wav=None, flow=None, out=tmp_path / "x.npy",
                      recipe=get_recipe("demo"), weights_root=tmp_path, device="cpu", batch_size=1)
        assert not (tmp_path / "x.npy").exists()
        with pytest.raises(ValueError, match="already registered"):
            registry.register(registry.Extractor("i3d", "frames", 3, "x:y"))
    finally:
        del registry.EXTRACTORS["wrongwidth"]
    assert registry.visual_names() == ["i3d", "r21d"] and registry.get("vggish").reads == "audio"
    r = get_recipe("unav100")
    assert registry.weights_needed(r, "i3d") == ["raft-sintel", "i3d_rgb", "i3d_flow"]
    assert registry.weights_needed(r.replace(weights="random"), "i3d") == []
    assert (r.min_frames, r.replace(visual="r21d").min_frames) == (r.stack + 1, r.stack)
