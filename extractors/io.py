"""Atomic file writes: every output is written beside its final path and renamed into place, so an
interrupted job never leaves a half-written file where a finished one is expected (docs/recipes.md, "Files")."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(final: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``final``'s directory; rename it to ``final`` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}{suffix if suffix is not None else final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def package_version() -> str:
    """This package's version, for provenance ("0+unknown" in a source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("avloc")
    except PackageNotFoundError:
        return "0+unknown"


def save_npy(path: Path | str, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def save_npz(path: Path | str, **arrays: np.ndarray) -> None:
    """Uncompressed ``.npz``, atomically (the files EAR's stages pass to each other)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_npz(path: Path | str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
