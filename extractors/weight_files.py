"""Checkpoint files on disk: download (with mirrors and zip members), verify against the registry's digest
or the pin written at first use, and say how to get a missing one. Nothing is loaded here (no torch)."""

from __future__ import annotations

import os
import shlex
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from extractors.io import sha256_file
from extractors.weight_registry import (
    DEFAULT_ROOT,
    FETCH_HINT,
    WeightsError,
    WeightSpec,
    get_spec,
    weights_path,
)


def _pin_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _how_to_get(spec: WeightSpec, path: Path) -> str:
    root = path.parent
    how = f"download {spec.url}"
    if spec.archive_member:
        how += f", extract {spec.archive_member!r} from the zip,"
    return (
        f"get it with `python -m extractors.weights fetch {spec.name} --root {shlex.quote(str(root))}` "
        f"(in the workflow: `{FETCH_HINT}` fetches every checkpoint the configured recipes need), "
        f"or {how} and put it at {path}"
    )


def _check_digest(spec: WeightSpec, path: Path, digest: str) -> None:
    """Raise WeightsError unless ``digest`` matches the strongest registered/pinned reference."""
    if spec.sha256 is not None:
        if digest != spec.sha256:
            raise WeightsError(
                f"SHA-256 mismatch for {path} ({spec.name}): expected {spec.sha256}, got {digest}. "
                f"Delete the file and fetch it again from {spec.url}"
            )
        return
    if spec.sha256_prefix is not None and not digest.startswith(spec.sha256_prefix):
        raise WeightsError(
            f"SHA-256 mismatch for {path} ({spec.name}): expected a digest starting with "
            f"{spec.sha256_prefix} (from the official file name), got {digest}. "
            f"Delete the file and fetch it again from {spec.url}"
        )
    pin = _pin_path(path)
    if pin.exists():
        pinned = pin.read_text().split()[0]
        if digest != pinned:
            raise WeightsError(
                f"SHA-256 mismatch for {path} ({spec.name}): pinned {pinned} at first use ({pin}), got {digest}"
            )


def _write_pin(spec: WeightSpec, path: Path, digest: str) -> None:
    """Trust on first use: record the digest beside a file whose full SHA-256 is not registered."""
    if spec.sha256 is not None:
        return
    pin = _pin_path(path)
    if pin.exists():
        return
    tmp = pin.with_name(f".{pin.name}.tmp-{os.getpid()}")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp, pin)


def verify(name: str, root: Path | str = DEFAULT_ROOT) -> str:
    """Return the SHA-256 of the present checkpoint after checking it (pinning it on first use)."""
    spec = get_spec(name)
    path = weights_path(name, root)
    if not path.is_file():
        raise WeightsError(f"missing weights file {spec.filename!r} ({spec.name}): {_how_to_get(spec, path)}")
    digest = sha256_file(path)
    _check_digest(spec, path, digest)
    _write_pin(spec, path, digest)
    return digest


def _download(url: str, dest: Path, timeout: float) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "avloc-weights/1"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out, length=1 << 20)


def fetch(name: str, root: Path | str = DEFAULT_ROOT, timeout: float = 60.0) -> Path:
    """Download checkpoint ``name`` into ``root`` unless a verified copy is already there.

    The download goes to a temporary file in the same directory, is verified (and unzipped when the
    source is an archive), and only then renamed into place, so a partial file never looks complete.
    """
    spec = get_spec(name)
    path = weights_path(name, root)
    if path.is_file():
        verify(name, root)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url, member in spec.sources():
        tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
        tmp_member = path.with_name(f".{path.name}.member-{os.getpid()}")
        try:
            try:
                _download(url, tmp, timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            if member is not None:
                try:
                    with zipfile.ZipFile(tmp) as zf, zf.open(member) as src, open(tmp_member, "wb") as dst:
                        shutil.copyfileobj(src, dst, length=1 << 20)
                except (zipfile.BadZipFile, KeyError) as exc:
                    errors.append(f"{url}: cannot extract {member!r}: {exc}")
                    continue
                os.replace(tmp_member, tmp)
            digest = sha256_file(tmp)
            _check_digest(spec, path, digest)  # a mismatch is an error, never a silent retry
            os.replace(tmp, path)
            _write_pin(spec, path, digest)
            return path
        finally:
            for t in (tmp, tmp_member):
                if t.exists():
                    t.unlink()
    raise WeightsError(
        f"could not download weights file {spec.filename!r} ({spec.name}) from {spec.url}: "
        + "; ".join(errors)
        + f". Without network access, {_how_to_get(spec, path)}"
    )


