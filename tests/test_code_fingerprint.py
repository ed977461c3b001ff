"""Code changes rerun what they change: the source-file mapping of models.run.code_fingerprint matches the
imports of the files it names, a fingerprint moves only for the models whose files changed, and in the
workflow (a finished run on a generated release, then one localizer edited) only that model's train and
evaluate jobs rerun."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_release import SLICE, TINY, make_release
from test_workflow import job_counts

from models.localizers import registry
from models.run.code_fingerprint import (
    EVALUATE_FILES,
    PREDICT_FILES,
    TRAIN_FILES,
    code_fingerprint,
    model_files,
    own_files,
)

REPO = Path(__file__).resolve().parents[1]
# atomic writes, progress lines: cannot change a number; the extractor table (recipes ask it for min_frames):
# acts through the feature files, the model's inputs (see the module docstring)
NOT_COUNTED = {"extractors/io.py", "models/run/progress.py", "extractors/registry.py"}
# imports on code paths these jobs do not take: predict.py extracts features of new videos (the predict rule);
# compare.py's in-memory table and its CLI train and build the planted benchmark (jobs use supervision_overrides);
# predict.py's recipe check (extractors.discovery.extraction_fields) refuses a mismatch, it cannot change a number
# train.py draws curve.png with plots.py: a picture of the log, not a number (models.run.code_fingerprint's docstring)
SKIP_EDGES = {("models/run/train.py", "models/run/plots.py"), ("models/run/predict.py", "extractors/extract.py"), ("models/run/predict.py", "extractors/discovery.py"), ("models/run/compare.py", "models/run/train.py"),
              ("models/run/compare.py", "models/run/evaluate.py"), ("models/run/compare.py", "models/data/synthetic.py")}
MODEL_FILES = {name: own_files(name) for name in registry.names(None)}  # from each localizer's declaration
LOCALIZERS = {files[0] for files in MODEL_FILES.values()}  # each model's own module, listed first


def project_imports(rel: str) -> set[str]:
    """Repository-relative files of the project modules ``rel`` imports (anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse((REPO / rel).read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            if name.split(".")[0] in ("models", "extractors"):
                path = name.replace(".", "/")
                found.add(f"{path}.py" if (REPO / f"{path}.py").exists() else f"{path}/__init__.py")
    return {f for f in found if not f.endswith("__init__.py")}


def closure(start: set[str], stop: set[str]) -> set[str]:
    """Files reachable from ``start`` by imports, not descending into ``stop`` (another model's module)."""
    seen, todo = set(), list(start)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        if f not in stop:
            todo += sorted(g for g in project_imports(f) - seen if (f, g) not in SKIP_EDGES)
    return seen


def test_mapping_covers_every_import_and_every_model():
    assert set(MODEL_FILES) == set(registry.MODELS) and "ear" in MODEL_FILES  # EAR's declaration, a layer up, found
    for name, own in MODEL_FILES.items():
        need = closure(set(own), LOCALIZERS - set(own)) - NOT_COUNTED
        assert need <= set(own) | set(TRAIN_FILES), (name, sorted(need - set(own) - set(TRAIN_FILES)))
    for stage, entry, files in (("train", "workflow/scripts/train.py", TRAIN_FILES),
                                ("evaluate", "workflow/scripts/evaluate.py", EVALUATE_FILES),
                                ("predict", "workflow/scripts/predict.py", PREDICT_FILES)):
        need = closure({entry}, LOCALIZERS) - LOCALIZERS - NOT_COUNTED
        assert need <= set(files), (stage, sorted(need - set(files)))
    assert set(model_files("ccnet-full_shuffled_seed2", "train")) == set(MODEL_FILES["ccnet"]) | set(TRAIN_FILES)
    with pytest.raises(KeyError, match="unknown model 'tcn'"):
        model_files("tcn-weak", "train")


def copy_code(dst: Path) -> Path:
    """The workflow and the packages it imports, without caches, as a repository of its own."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("models", "extractors", "workflow", "config", "envs"):
        shutil.copytree(REPO / d, dst / d, ignore=ignore)
    shutil.copy(REPO / "Snakefile", dst / "Snakefile")
    return dst


def test_fingerprint_moves_only_for_the_edited_files(tmp_path):
    root = copy_code(tmp_path / "repo")
    models = ["clasp", "mil", "ccnet-full", "dave-weak", "avel-weak", "clasp_shuffled_seed1"]

    def prints() -> dict[tuple[str, str], str]:
        return {(m, s): code_fingerprint(m, s, root) for m in models for s in ("train", "evaluate", "predict")}

    before = prints()
    assert before == {(m, s): code_fingerprint(m, s, root) for m, s in before}  # deterministic
    assert before[("clasp", "train")] == before[("clasp_shuffled_seed1", "train")]  # control and seeds: same code
    with open(root / "models/localizers/losses.py", "a") as fh:  # the losses AVEL shares with the pyramid models
        fh.write("# a comment is an edit\n")
    after = prints()
    assert {k for k in before if before[k] != after[k]} == {(m, s) for m in ("ccnet-full", "dave-weak", "avel-weak")
                                                            for s in ("train", "evaluate", "predict")}
    with open(root / "models/run/plots.py", "a") as fh:
        fh.write("\n")
    again = prints()
    assert {k for k in after if after[k] != again[k]} == {(m, s) for m in models for s in ("evaluate", "predict")}
    # a workflow copied without the packages beside it hashes the installed ones (the code its jobs import)
    only_workflow = tmp_path / "only_workflow"
    shutil.copytree(root / "workflow", only_workflow / "workflow")
    assert code_fingerprint("mil", "train", only_workflow) == code_fingerprint("mil", "train")
    (root / "models/localizers/mil.py").unlink()
    with pytest.raises(FileNotFoundError):
        code_fingerprint("mil", "train", root)


def test_editing_one_localizer_reruns_only_that_model(tmp_path):
    """A finished run of two models; then the dry run after editing CLASP's module shows CLASP's train and
    evaluate (and the tables over all models) and not MIL's; after editing the plotting code, both models'
    evaluate jobs and no training."""
    root = copy_code(tmp_path / "repo")
    (tmp_path / "data").mkdir()
    shutil.copy(SLICE, tmp_path / "data" / "ann.json")
    make_release(tmp_path / "data" / "release", tmp_path / "data" / "ann.json", t_cap=24)
    work = tmp_path / "work"
    work.mkdir()
    import yaml

    (work / "config.yaml").write_text(yaml.safe_dump({"datasets": {"unav": {
        "features": {"from": str(tmp_path / "data" / "release"), "layout": "unav_release"}, "recipe": "unav100",
        "recipe_overrides": {"t_max": 16}, "annotations": str(tmp_path / "data" / "ann.json"),
        "models": ["mil", "clasp"], "train": {"epochs": 1, "batch_size": 4, "seed": 0}, "model_overrides": TINY}}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}

    def smk(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(work),
                               "--configfile", str(work / "config.yaml"), "--workflow-profile", "none",
                               "--cores", "2", "--resources", "gpu=1", *args],
                              capture_output=True, text=True, env=env, cwd=work)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return proc.stdout + proc.stderr

    smk()
    assert "Nothing to be done" in smk("-n")
    with open(root / "models/localizers/clasp.py", "a") as fh:
        fh.write("# edited\n")
    out = smk("-n")
    counts = job_counts(out)
    assert {k: counts.get(k) for k in ("train", "evaluate", "feature_store")} == {"train": 1, "evaluate": 1,
                                                                                   "feature_store": None}
    assert "model=clasp" in out and "model=mil" not in out
    assert "Params have changed since last execution" in out
    (root / "models/localizers/clasp.py").write_text((REPO / "models/localizers/clasp.py").read_text())
    assert "Nothing to be done" in smk("-n")  # the same bytes again: the same fingerprint
    with open(root / "models/run/plots.py", "a") as fh:
        fh.write("# edited\n")
    counts = job_counts(smk("-n"))
    assert counts.get("train") is None and counts["evaluate"] == 2
