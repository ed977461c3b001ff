"""Which source files a trained model depends on, and a hash of their contents.

The workflow's ``train``, ``evaluate`` and ``predict`` rules take :func:`code_fingerprint` as a param, so Snakemake's
default ``params`` rerun trigger retrains (re-evaluates) a model when *its* code changes, and nothing else:
editing ``models/localizers/ccnet.py`` reruns the ``ccnet-*`` jobs only, editing the shared training loop
reruns every model. (Snakemake's own ``code`` trigger sees the rule's script, not the modules it imports;
the worker's :func:`extractors.worker.protocol.fingerprint` keys live processes by size and mtime, which a ``git
checkout`` changes without changing a byte, so reruns are keyed by content here.)

A model's own modules come from its declaration (``uses`` of
:func:`models.localizers.registry.register_localizer`, :func:`model_files`); the stage files live here and nowhere
else: :data:`TRAIN_FILES`
(data, training, validation-selection code every model's training runs), :data:`EVALUATE_FILES` (test-split
prediction, metrics and plots) and :data:`PREDICT_FILES` (the ``predict`` rule: timelines of new videos). ``tests/test_code_fingerprint.py`` checks it against the imports of these
files, so a new import of a project module that is missing here fails the test rather than going unseen.
Not counted: :mod:`extractors.io` (atomic writes) and :mod:`models.run.progress` (progress lines), which
cannot change a number, :mod:`extractors.registry` (the extractor table: it acts through the feature files,
which are the model's inputs, so adding an extractor retrains nothing), and, for training,
:mod:`models.run.plots` (``curve.png`` is a picture of the log; editing the plots re-evaluates, it does not retrain). Any byte counts, comments included.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Every model's training and evaluation runs these (model-independent layers, the data path, the loop).
_COMMON = (
    "extractors/recipes.py",  # windows -> seconds, t_max: decides what the model sees and what is scored
    "models/data/activitynet.py",
    "models/data/annotations.py",
    "models/data/dataset.py",
    "models/data/steps.py",
    "models/data/store.py",
    "models/data/unav.py",
    "models/localizers/base.py",
    "models/localizers/class_prior.py",
    "models/localizers/decoding.py",  # the weak decoder every weak model (and the dense models' Soft-NMS) runs
    "models/localizers/input_norm.py",
    "models/localizers/pooling.py",
    "models/localizers/postprocess.py",
    "models/localizers/registry.py",
    "models/localizers/targets.py",  # decoding.py's pyramid points
    "models/run/names.py",
    "models/run/pipeline.py",
    "models/run/runtime.py",
)

TRAIN_FILES: tuple[str, ...] = (*_COMMON, "models/run/train.py", "models/run/controls.py", "models/run/ema.py",
                                "models/run/selection.py", "models/run/decoder_selection.py",
                                "models/run/evaluate.py",  # best = validation mAP
                                "models/run/metrics.py", "models/run/compare.py", "workflow/scripts/train.py")
EVALUATE_FILES: tuple[str, ...] = (*_COMMON, "models/run/evaluate.py", "models/run/metrics.py",
                                   "models/run/compare.py", "models/run/predict.py", "models/run/plots.py",
                                   "workflow/scripts/evaluate.py")
PREDICT_FILES: tuple[str, ...] = (*_COMMON, "models/run/predict.py", "models/run/plots.py", "models/run/metrics.py",
                                  "models/run/compare.py", "workflow/scripts/predict.py",
                                  "extractors/errors.py")  # a failed video's record is its prediction

STAGES = {"train": TRAIN_FILES, "evaluate": EVALUATE_FILES, "predict": PREDICT_FILES}


def base_model(name: str) -> str:
    """Registry name of a workflow model name: ``ccnet-full_shuffled_seed2`` -> ``ccnet``
    (:func:`models.run.names.parse_model_name`, the one parser of the name grammar)."""
    from models.run.names import parse_model_name

    return parse_model_name(name)[0]


def own_files(base: str) -> list[str]:
    """Source files of registered localizer ``base``, its own module first: repository-relative inside the
    repository, absolute for a user's module outside it (``localizer_modules``)."""
    from models.localizers.registry import source_files

    return [p.relative_to(REPO).as_posix() if p.is_relative_to(REPO) else str(p) for p in source_files(base)]


def model_files(name: str, stage: str) -> list[str]:
    """Source files of model ``name`` (a workflow name) for ``stage`` (:data:`STAGES`): its declared modules
    (:func:`own_files`) and the stage's."""
    if stage not in STAGES:
        raise KeyError(f"stage {stage!r}: expected one of {sorted(STAGES)}")
    return sorted(set(own_files(base_model(name))) | set(STAGES[stage]))


@functools.cache
def _file_sha(path: str, size: int, mtime_ns: int) -> str:
    """Content hash, memoised per (size, mtime) so a DAG with hundreds of jobs reads each file once."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def code_fingerprint(name: str, stage: str, root: str | os.PathLike[str] = REPO) -> str:
    """16 hex digits over the contents of :func:`model_files` under ``root`` (the workflow's folder; the
    installed packages for a folder that holds only the workflow): equal exactly when none of the files
    that decide this model's ``stage`` output changed."""
    h = hashlib.sha256()
    for rel in model_files(name, stage):
        path = Path(root, rel)
        if Path(rel).is_absolute():  # a user's module: hashed under its file name, so a moved project keeps it
            rel = path.name
        elif not rel.startswith("workflow/") and not Path(root, rel.split("/")[0]).is_dir():
            # a workflow folder without the packages beside it (the Snakefile and workflow/ copied on their
            # own): its jobs import the installed packages, so those are the code that decides the output
            path = Path(REPO, rel)
        st = path.stat()  # a missing file is an error: a fingerprint that silently skipped it would never change
        h.update(f"{rel}:{_file_sha(str(path), st.st_size, st.st_mtime_ns)}\n".encode())
    return h.hexdigest()[:16]
