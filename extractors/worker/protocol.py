"""The worker folder, slot paths, the code fingerprint and the request format: what client and worker agree on.

Both sides check the other (uid over ``SO_PEERCRED``, owner-only files opened without following symlinks)
because the sockets carry jobs on a shared machine (the security model in :mod:`extractors.worker`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import socket
import stat
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# every module of extractors/ (this package included): a worker runs them, so a change of any means a new worker
EXTRACTORS_DIR = Path(__file__).resolve().parents[1]
SWITCH_ENV = "AVLOC_WORKER"
IDLE_ENV = "AVLOC_WORKER_IDLE_S"
GPU_IDLE_ENV = "AVLOC_WORKER_GPU_IDLE_S"
DIR_ENV = "AVLOC_WORKER_DIR"
DEFAULT_IDLE_S = 120.0
DEFAULT_GPU_IDLE_S = 10.0
START_TIMEOUT_S = 600.0
CANCEL_WAIT_S = 5.0  # how long a signalled client waits for the worker to confirm the job stopped
STALE_S = 24 * 3600.0  # lock/log files of other fingerprints unused this long are removed
SUN_PATH_MAX = 107  # bytes of a Unix socket path (sun_path is 108 with the NUL)
DEFAULT_ENTRY = "extractors.extract"  # the module whose main(argv) runs a job unless --entry names another
ENTRIES = ("extractors.extract", "extractors.llp.extract")  # the only code a worker runs for a request
_FINGERPRINT_ENV = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_STEP_ID", SWITCH_ENV, "PYTHONPATH",
                    "LD_LIBRARY_PATH")


class WorkerError(RuntimeError):
    """The worker machinery cannot run the job (unsafe folder, socket path too long, start failure)."""


# ------------------------------------------------------------------------------------------ the folder
def check_private_dir(path: Path) -> None:
    """Refuse a worker folder other users could write to or replace: sockets there carry jobs."""
    st = os.lstat(path)
    problems = []
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        problems.append("is not a directory (a symlink or a file)")
    if st.st_uid != os.getuid():
        problems.append(f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()})")
    if stat.S_IMODE(st.st_mode) != 0o700:
        problems.append(f"has mode {stat.S_IMODE(st.st_mode):04o}, not 0700")
    if problems:
        raise WorkerError(f"refusing worker directory {path}: it {' and '.join(problems)}; other users could "
                          f"read or replace its sockets, locks and logs. Remove it, or set {DIR_ENV} to a "
                          "directory owned by you with mode 0700")


def worker_dir() -> Path:
    """Node-local, owner-only folder for the sockets, locks and logs (``$AVLOC_WORKER_DIR``, else
    ``$TMPDIR/avloc-workers-<uid>``); created 0700 and checked (owner and mode) every time."""
    explicit = os.environ.get(DIR_ENV)
    path = Path(explicit) if explicit else Path(tempfile.gettempdir()) / f"avloc-workers-{os.getuid()}"
    if not explicit and len(os.fsencode(str(path))) > SUN_PATH_MAX - 40:  # room for "<fp>-<pool>-<slot>.sock"
        fallback = Path(f"/tmp/avloc-workers-{os.getuid()}")
        print(f"[worker] {path} is too long for Unix socket paths; using {fallback} (set {DIR_ENV} to "
              "choose another folder)", file=sys.stderr)
        path = fallback
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # whatever the umask
    check_private_dir(path)
    return path


def fingerprint() -> str:
    """Which code and start-up environment a worker runs: jobs only go to a worker with the same one."""
    h = hashlib.sha1()
    h.update(f"{sys.executable}|{sys.version}|{EXTRACTORS_DIR}".encode())
    for path in sorted(EXTRACTORS_DIR.rglob("*.py")):
        st = path.stat()
        h.update(f"|{path.relative_to(EXTRACTORS_DIR)}:{st.st_size}:{st.st_mtime_ns}".encode())
    for name in _FINGERPRINT_ENV:
        h.update(f"|{name}={os.environ.get(name, '')}".encode())
    return h.hexdigest()[:16]


def slot_paths(pool: str, slot: int, key: str | None = None) -> dict[str, Path]:
    """Lock, socket and log of one slot; a socket path over the kernel's limit is an error, not a fallback."""
    stem = worker_dir() / f"{key or fingerprint()}-{pool}-{slot}"
    paths = {"lock": stem.with_suffix(".lock"), "socket": stem.with_suffix(".sock"), "log": stem.with_suffix(".log")}
    n = len(os.fsencode(str(paths["socket"])))
    if n > SUN_PATH_MAX:
        raise WorkerError(f"worker socket path {paths['socket']} is {n} bytes, over the {SUN_PATH_MAX}-byte limit "
                          f"of Unix socket paths; set {DIR_ENV} to a shorter folder (e.g. /tmp/avloc-{os.getuid()})")
    return paths


def open_private(path: Path, flags: int) -> int:
    """Open (creating 0600) a regular file of ours without following a symlink planted at ``path``."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise WorkerError(f"refusing {path}: it is a symbolic link") from err
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        os.close(fd)
        raise WorkerError(f"refusing {path}: not a regular file owned by you")
    return fd


def peer_uid(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return pid, uid


def sweep_stale(folder: Path, keep: str, max_age_s: float = STALE_S) -> list[Path]:
    """Remove lock/log/socket files of other fingerprints (old code) unused for ``max_age_s``: none is
    held by a client and nothing listens on its socket. The removed paths."""
    removed: list[Path] = []
    stems = {p.with_suffix("") for p in folder.glob("*.lock") if not p.name.startswith(keep + "-")}
    now = time.time()
    for stem in stems:
        files = [stem.with_suffix(s) for s in (".lock", ".log", ".sock")]
        with contextlib.suppress(OSError, WorkerError):
            if any(now - f.lstat().st_mtime < max_age_s for f in files if os.path.lexists(f)):
                continue
            fd = open_private(files[0], os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a client holds it
                live = connect(files[2])
                if live is not None:
                    live.close()
                    continue
                for f in files:
                    if os.path.lexists(f):
                        f.unlink()
                        removed.append(f)
            finally:
                os.close(fd)
    return removed


def connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock



def check_entry(entry: str) -> str:
    """``entry`` if it is one of the extraction entry points: a worker runs nothing else."""
    if entry not in ENTRIES:
        raise ValueError(f"entry {entry!r} is not an extraction entry point (one of {', '.join(ENTRIES)})")
    return entry


def entry_main(entry: str) -> Any:
    """``main`` of the entry module (imported once per process)."""
    import importlib

    return importlib.import_module(check_entry(entry)).main



def valid_request(request: Any) -> str | None:
    """Why a request is malformed (None when it is fine): a worker runs only well-formed extraction jobs."""
    if not isinstance(request, dict):
        return "not a JSON object"
    checks = {"argv": lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v),
              "cwd": lambda v: isinstance(v, str), "threads": lambda v: isinstance(v, int),
              "entry": lambda v: v in ENTRIES, "umask": lambda v: isinstance(v, int) and 0 <= v <= 0o777,
              "env": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
              "record": lambda v: v is None or isinstance(v, str)}
    bad = [k for k, ok in checks.items() if k not in request or not ok(request[k])]
    return f"bad or missing {', '.join(bad)}" if bad else None


