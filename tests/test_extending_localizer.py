"""docs/extending.md's "Add a localizer" as written: the page's code blocks (the toy localizer module and the
config lines) are written to a temporary project and registered the documented way; the declaration reaches
the registry, the config check, the schema's model pattern, the code fingerprint and compare, and the toy model
goes from nothing to metrics and a compare-table row through `snakemake` on the demo clips."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from test_workflow import job_counts

from models.localizers import registry
from models.run import code_fingerprint, config_check
from models.run.compare import supervision_overrides

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "extending.md"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def doc_files(section: str = "## Add a localizer") -> dict[str, str]:
    """``{file name: text}`` of the section's code blocks introduced by a line `` `name`: ``."""
    part = DOC.read_text().split(f"\n{section}\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^`([\w.]+)`:\n\n```\w+\n(.*?)^```", part, re.S | re.M))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The documented files in a project folder; the registry as it was afterwards."""
    for name, text in doc_files().items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(registry.ENV, "")
    yield tmp_path.resolve()
    registry.MODELS.pop("toy", None)
    registry._loaded.clear()
    sys.modules.pop("my_localizer", None)


def test_the_doc_has_the_module_and_the_config_lines():
    files = doc_files()
    assert set(files) == {"my_localizer.py", "my_localizer.yaml"}
    assert '@register_localizer("toy"' in files["my_localizer.py"]
    cfg = yaml.safe_load(files["my_localizer.yaml"])
    assert cfg["localizer_modules"] == ["my_localizer.py"] and "toy" in cfg["datasets"]["demo"]["models"]


def test_one_declaration_reaches_every_list(project: Path):
    cfg = yaml.safe_load((project / "my_localizer.yaml").read_text())
    assert "toy" not in registry.names()
    registry.use_modules(cfg["localizer_modules"])
    assert "toy" in registry.names() and os.environ[registry.ENV] == str(project / "my_localizer.py")
    # the schema's pattern and the config check
    schema = config_check.load_schema(SCHEMA)
    ok = {"datasets": {"demo": {"videos": "v", "recipe": "demo", "models": ["toy", "toy-weak", "mil"],
                                "controls": ["toy"], "model_overrides": {"toy": {"hidden_dim": 8}}}}}
    assert config_check.schema_errors(ok, schema) == []
    assert config_check.model_override_errors(ok["datasets"]) == []
    bad = {"datasets": {"demo": {"videos": "v", "recipe": "demo", "models": ["tyo"],
                                 "model_overrides": {"toy": {"hiden_dim": 8}}}}}
    assert any("'tyo' does not match" in e and "did you mean 'toy'" in e for e in config_check.schema_errors(bad, schema))
    assert config_check.model_override_errors(bad["datasets"]) == [
        "datasets.demo.model_overrides.toy: unknown key 'hiden_dim' (did you mean 'hidden_dim'?)"]
    # the code fingerprint covers its file and what it `uses`, and moves when the file changes
    files = code_fingerprint.model_files("toy_shuffled_seed1", "train")
    assert str(project / "my_localizer.py") in files and "models/localizers/mil.py" in files
    before = code_fingerprint.code_fingerprint("toy", "train")
    with open(project / "my_localizer.py", "a") as fh:
        fh.write("# edited\n")
    assert code_fingerprint.code_fingerprint("toy", "train") != before
    # compare's supervision check, and the contract: forward -> loss -> detect
    assert supervision_overrides("toy", "weak") == {}
    with pytest.raises(ValueError, match="model 'toy' supports only 'weak' supervision, not 'full'"):
        supervision_overrides("toy", "full")
    model = registry.build_model("toy", num_classes=3, audio_dim=4, visual_dim=6, input_norm="none")
    assert model.supervision == "weak"
    torch.manual_seed(0)
    batch = {"audio": torch.randn(2, 8, 4), "visual": torch.randn(2, 8, 6),
             "mask": torch.tensor([[True] * 8, [True] * 5 + [False] * 3]), "labels": torch.tensor([[1.0, 0, 0]] * 2)}
    out = model(batch)
    model.loss(out, batch).backward()
    assert model.head.weight.grad is not None
    dets = model.detect(out, batch)
    assert len(dets) == 2 and all(s < e and 0 <= c < 3 for s, e, c, _ in dets[0] + dets[1])
    assert max(e for _, e, _, _ in dets[1]) <= 5  # nothing on the padded steps of the shorter video


def test_a_misnamed_declaration_is_refused():
    with pytest.raises(ValueError, match="localizer name 'my-model'"):
        registry.register_localizer("my-model", config=registry.get_entry("mil")[0], supervision=("weak",))(
            type("M", (), {}))
    with pytest.raises(ValueError, match="supervision must be one or more of"):
        registry.register_localizer("semi", config=registry.get_entry("mil")[0], supervision=("semi",))(
            type("M", (), {}))
    assert "semi" not in registry.MODELS


def test_the_doc_localizer_through_snakemake(tmp_path: Path):
    """The demo workflow, small (3 generated clips, the base models for one epoch), with the doc's files
    added as the doc says: `--configfile my_localizer.yaml`; then an edit of the module reruns only `toy`."""
    for name, text in doc_files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"datasets": {"demo": {
        "videos": "data/demo/videos", "recipe": "demo", "annotations": "data/demo/annotations.json",
        "recipe_overrides": {"t_max": 16},
        "generate_demo": {"n_videos": 3, "duration_s": 3.0, "seed": 1, "classes": ["red_beep", "bars_hum"],
                          "size": [224, 224], "grid_s": 0.96, "min_event_s": 0.96, "region": 0.75, "noise": 0,
                          "n_val": 0, "n_test": 1},
        "models": ["mil"], "train": {"seed": 0, "holdout_frac": 0.5},
        "model_overrides": {"clasp": {"hidden_dim": 16, "n_global": 2, "n_local": 1, "n_windows": 1, "epochs": 1},
                            "mil": {"hidden_dim": 16, "epochs": 1}}}}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(registry.ENV, None)

    def smk(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "snakemake", "results/demo/compare.md", *args, "-s",
                               str(REPO / "Snakefile"), "-d", str(tmp_path), "--workflow-profile", "none", "--cores",
                               "2", "--resources", "gpu=1", "--configfile", "config.yaml", "my_localizer.yaml"],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return proc.stdout + proc.stderr

    smk()
    res = tmp_path / "results" / "demo"
    metrics = json.loads((res / "models" / "toy" / "metrics.json").read_text())
    assert 0.0 <= metrics["avg"] <= 1.0
    rows = [line.split("|")[1].strip() for line in (res / "compare.md").read_text().splitlines()[2:]]
    assert set(rows) == {"clasp", "mil", "toy"}
    with open(tmp_path / "my_localizer.py", "a") as fh:
        fh.write("# edited\n")
    out = smk("-n")
    assert {k: job_counts(out).get(k) for k in ("train", "evaluate")} == {"train": 1, "evaluate": 1}
    assert "model=toy" in out and "model=mil" not in out and "model=clasp" not in out
