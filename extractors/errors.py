"""The one line between an input's own fault and every other failure.

Why: a job that meets a bad *input* (it cannot be decoded, has no usable stream, is too short) records
the failure as its result so the rest of the dataset goes on; a job that meets anything else (a missing
temp dir, a full disk, a CUDA error, missing weights, a bug) must fail loudly, because recording it as a
bad input would silently drop a good video. Only :class:`ContentError` and its subclasses are the
input's fault; every caller that records a failure catches exactly this type.

A recorded failure is a *failure record* (:func:`write_failure`, :func:`read_failure`): the job's ``.json``
holds ``failed`` and ``stage`` and its data files are empty, so the store, the summary and prediction
skip the video and deleting the record retries it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from extractors.io import atomic_path, save_npy, write_json

log = logging.getLogger("extractors")


class ContentError(Exception):
    """The input file itself cannot give features; ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MediaError(ContentError):
    """A video that cannot be normalized (the input's own fault); ``str()`` names the file and the reason."""


def failure_reason(err: ContentError) -> str:
    """The reason a failure record stores (the same text as LLP's per-clip records)."""
    return f"{type(err).__name__}: {err}"


def write_failure(records: list[Path], empties: list[Path], *, stage: str, reason: str,
                  source: Path | str) -> None:
    """Publish a failure record in place of a job's outputs: each data file empty, each ``.json`` with
    ``failed`` and ``stage``. Data files first and records last, each atomically, so a finished record
    always sits beside its (empty) data files."""
    for path in empties:
        if path.suffix == ".npy":
            save_npy(path, np.zeros((0, 0), dtype=np.float32))
        else:
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"")
    for path in records:
        write_json(path, {"id": Path(source).stem, "failed": reason, "stage": stage, "input": str(source)})
    log.error("%s failed at the %s stage (recorded, the job succeeds): %s", source, stage, reason)


def read_failure(record: Path | str) -> dict[str, str] | None:
    """``{"failed": reason, "stage": stage}`` when ``record`` (a media manifest or a feature provenance
    ``.json``) is a failure record, else None (also when it does not exist)."""
    record = Path(record)
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if not isinstance(data, dict) or not data.get("failed"):
        return None
    return {"failed": str(data["failed"]), "stage": str(data.get("stage", "features"))}
