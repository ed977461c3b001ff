"""Glue between the Snakemake rules and the models package: how a dataset entry of the config becomes
train / validation / test datasets, and how a workflow model name (``ccnet-weak``, parsed by
:mod:`models.run.names`) becomes a registry name plus supervision overrides. Kept here (not in rule
bodies) so it is importable and tested."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from extractors.recipes import Recipe
from models.data.activitynet import read_activitynet
from models.data.annotations import VideoAnnotation, class_list
from models.data.dataset import FeatureDataset
from models.data.store import FeatureStore
from models.data.unav import read_unav
from models.run.names import (  # noqa: F401 - the name grammar, re-exported for the run scripts
    CONTROL_SUFFIX,
    parse_model_name,
    run_name,
    split_control,
    split_seed,
)

log = logging.getLogger("models.run.pipeline")


def log_to_file(path: str | Path) -> None:
    """Send a Snakemake ``script:``'s logging, warnings, tracebacks and prints to its rule ``log:`` file
    (Snakemake redirects ``shell:`` output with ``> {log}`` but leaves scripts on its own console)."""
    import sys

    fh = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
    console = sys.__stderr__
    sys.stdout = sys.stderr = fh
    logging.basicConfig(stream=fh, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    # progress lines (training epochs, heartbeats) also go to the console Snakemake prints to, so a long
    # job shows signs of life where the user is looking (and in the SLURM job's output on a cluster)
    if console is not None:
        to_console = logging.StreamHandler(console)
        to_console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logging.getLogger("avloc.progress").addHandler(to_console)


def model_overrides(name: str) -> tuple[str, dict[str, Any]]:
    from models.localizers.registry import get_entry
    from models.run.compare import supervision_overrides

    base, sup = parse_model_name(name)
    get_entry(base)  # unknown names fail here with the registry's message
    return base, (supervision_overrides(base, sup) if sup else {})


def read_annotations(path: Path | str, recipe: Recipe) -> dict[str, VideoAnnotation]:
    return read_activitynet(path) if recipe.name == "activitynet" else read_unav(path)


def load_splits(store_dir: Path | str, annotations: Path | str, recipe: Recipe,
                subsets: tuple[str, ...] = ("train", "validation", "test"),
                classes: list[str] | None = None) -> dict[str, FeatureDataset]:
    """One FeatureDataset per subset over the store. The class list comes from *all* annotations
    (:func:`models.data.annotations.class_list`, ``label_id`` order where the file has ids), so every split
    and every checkpoint agrees on class indices; ``classes`` overrides it (a checkpoint's own list,
    :func:`checkpoint_classes`). Annotated videos that are not in the store (undecodable, or absent from
    a feature release) are logged and kept as each split's ``without_features``: they are not loaded,
    and evaluation counts their ground truth as missed, as the reference evaluator (ground truth read
    from the annotation file, whatever was predicted) does. A subset without a single annotated event
    (ActivityNet's ``testing``) is left out: nothing can be trained or scored on it."""
    store = FeatureStore(store_dir)
    ann = read_annotations(annotations, recipe)
    classes = list(classes) if classes is not None else class_list(ann)
    missing = sorted(v for v in ann if v not in store)
    if missing:
        log.warning("%d annotated video(s) have no features and are left out (their ground truth counts as "
                    "missed at evaluation): %s", len(missing), missing[:10])
    present = {v: a for v, a in ann.items() if v in store}
    absent = {v: ann[v] for v in missing}
    out = {}
    for subset in subsets:
        if not any(a.segments for a in ann.values() if a.subset == subset):
            continue
        ds = FeatureDataset(store, present, classes, recipe, subset=subset, without_features=absent)
        if len(ds):
            out[subset] = ds
    return out


def checkpoint_classes(checkpoint: Path | str, annotations: Path | str, recipe: Recipe) -> list[str]:
    """The class list to evaluate ``checkpoint`` with: its own, stored at training time.

    A checkpoint written before classes followed ``label_id`` holds the same names in sorted order; scores
    are computed on names, so evaluating it in its own order gives the same metrics and it stays usable.
    A checkpoint whose names differ from the annotation file's fails here, naming the difference.
    """
    from models.run.runtime import load_checkpoint

    ck = load_checkpoint(checkpoint).get("classes")
    ann_classes = class_list(read_annotations(annotations, recipe))
    if ck is None:
        return ann_classes
    ck = [str(c) for c in ck]
    if set(ck) != set(ann_classes):
        only_ck, only_ann = sorted(set(ck) - set(ann_classes)), sorted(set(ann_classes) - set(ck))
        raise ValueError(f"{checkpoint} was trained on other classes than {annotations}: only in the checkpoint "
                         f"{only_ck[:5]}, only in the annotations {only_ann[:5]}")
    if ck != ann_classes:
        log.info("%s: classes in its training order (sorted names, before label_id order); evaluated as stored",
                 checkpoint)
    return ck


def input_fingerprint(store_dir: Path | str, *parts: str) -> str:
    """Hash of the store index and the given strings: a resumable run is only resumed while it is equal."""
    h = hashlib.sha256(Path(store_dir, FeatureStore.INDEX).read_bytes())
    for p in parts:
        h.update(p.encode())
    return h.hexdigest()


def reset_stale_resume_state(run_dir: Path, fingerprint: str) -> None:
    """Delete ``last.pt`` when it belongs to a run on other inputs (e.g. before new videos arrived), so
    ``models.run.train.train(resume=True)`` resumes only an interrupted run of *this* job."""
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / "inputs.sha256"
    if marker.exists() and marker.read_text() == fingerprint:
        return
    (run_dir / "last.pt").unlink(missing_ok=True)
    marker.write_text(fingerprint)
