"""Extraction worker: per-video Snakemake jobs whose networks stay loaded between videos.

Why: a per-video job that starts Python, imports torch, builds RAFT/I3D/VGGish and hashes their
checkpoints pays seconds of start-up for a few seconds of work (a 5 s clip's VGGish job was 4.7 s,
nearly all start-up). Snakemake still owns the DAG here, one job per video and stage, so skipping,
incremental reruns, retries and per-video outputs stay exactly Snakemake's; only the process that
does the work lives longer.

How: each job's shell command runs ``python -m extractors.worker POOL -- <extract arguments>``, a
stdlib-only client (about 50 ms). The client takes the first free *slot* of its pool (a file lock
per slot, so one job per worker at a time and as many workers as jobs run at once), connects to that
slot's worker over a Unix socket, or starts it when none is listening, and hands it the job's
arguments, working directory, thread count, **its whole environment and umask**, and its own
stdout/stderr file descriptors (so everything the job prints lands in the job's Snakemake log). The
worker runs the job's *entry* in-process (``main(argv)`` of :data:`ENTRIES`: :mod:`extractors.extract`
by default, ``extractors.llp.extract`` for LLP's per-clip jobs) with
:func:`extractors.weights.keep_networks_resident` on, replies with the exit code and waits for the next
job.

The job's own environment: for the duration of a job the worker's ``os.environ``, umask, working
directory and ``tempfile.tempdir`` are the client's (restored afterwards), so a job behaves as it would
in its own process: ``TMPDIR``, ``PATH``, ``IMAGEIO_FFMPEG_EXE``, every ``AVLOC_*`` variable reach
the job and its ffmpeg children. Only what a process reads once at start-up is part of the worker's
*fingerprint* (in the socket name) instead: the interpreter, this package's sources, ``PYTHONPATH``,
``LD_LIBRARY_PATH``, and what picks the GPU (``CUDA_VISIBLE_DEVICES``, ``SLURM_JOB_ID``/``STEP_ID``).
Thread counts come from the job's ``--threads`` (``torch.set_num_threads`` per job).

Lifetime: a worker exits after ``AVLOC_WORKER_IDLE_S`` seconds without work (default 120; a worker that
used CUDA after ``AVLOC_WORKER_GPU_IDLE_S``, default 10, so a GPU Snakemake released is really free),
after any failed or cancelled job (a fresh process for the next one), and never serves other code.
Each worker runs under a small supervisor (a child subreaper): when the worker dies, even by
``kill -9``, the supervisor kills what the worker left running (ffmpeg) and removes the temporary files
of the job it was running.

Cancellation: when the client goes away (Snakemake killed it, or it got SIGINT/SIGTERM/SIGHUP and
closed its side), the worker kills the job's child processes, removes its temporary files, writes
``[worker] job cancelled ...`` to the job's log and exits without publishing anything; the next job of
the slot starts a fresh worker (a client whose request was not acknowledged simply retries).

Security model (a shared machine): the worker folder must be a directory owned by the user with mode
0700 (created so; anything else, also via ``AVLOC_WORKER_DIR``, is refused with an error), sockets are
0600 whatever the umask, both sides check the other's uid (``SO_PEERCRED``), lock and log files are
opened without following symlinks, and a worker runs only the extraction entry points of
:data:`ENTRIES`, nothing a request names otherwise.

Accounting: the worker measures each job's own wall time, CPU time (its own and its children's), its
peak RSS during the job and, with CUDA, the peak GPU memory; it writes them at the end of the job's log
and, with ``--record PATH``, as JSON to PATH (the rules put it beside Snakemake's benchmark file, whose
numbers are the client's). ``AVLOC_WORKER=0`` runs each job in its own process instead (the per-process
design, kept for debugging and as the reference of ``bench/extract_overhead_bench.py``); the record is
written the same way.

Slot ``i`` of a pool uses GPU ``i mod n_gpus`` when the job asks for CUDA, so a workstation running N
GPU jobs at once (``resources: gpu: N``) spreads them over its N GPUs. On SLURM the grouped jobs of one
submission run on one node and share that node's workers; SLURM ends them with the submission.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import resource
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
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
def _check_private_dir(path: Path) -> None:
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
    _check_private_dir(path)
    return path


def fingerprint() -> str:
    """Which code and start-up environment a worker runs: jobs only go to a worker with the same one."""
    h = hashlib.sha1()
    h.update(f"{sys.executable}|{sys.version}|{PACKAGE_DIR}".encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        st = path.stat()
        h.update(f"|{path.relative_to(PACKAGE_DIR)}:{st.st_size}:{st.st_mtime_ns}".encode())
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


def _open_private(path: Path, flags: int) -> int:
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


def _peer_uid(sock: socket.socket) -> tuple[int, int]:
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
            fd = _open_private(files[0], os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a client holds it
                live = _connect(files[2])
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


# ----------------------------------------------------------------------------------------------- client
def _take_slot(pool: str, key: str) -> tuple[int, int]:
    """Lock the first free slot of ``pool`` (fd of its lock file); the lock is held until the job ends."""
    slot = 0
    while True:
        path = slot_paths(pool, slot, key)["lock"]
        fd = _open_private(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            slot += 1
            continue
        try:  # a stale-file sweep may have removed the file between open and flock: lock the new one
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return slot, fd
        os.close(fd)


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


def _start_worker(pool: str, slot: int, paths: dict[str, Path], entry: str = DEFAULT_ENTRY) -> socket.socket:
    """Start the slot's worker (a new session, so it outlives this job) and connect once it listens; a
    start failure is reported with the worker's own message (sent over a pipe, so a full disk that
    swallows the log still says why)."""
    with contextlib.suppress(FileNotFoundError):
        paths["socket"].unlink()  # stale: nobody listens (we hold the slot's lock)
    sweep_stale(paths["lock"].parent, paths["lock"].name.split("-")[0])  # the key: our fingerprint
    log = _open_private(paths["log"], os.O_WRONLY | os.O_APPEND)
    ready_r, ready_w = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "extractors.worker", "serve", "--pool", pool, "--slot", str(slot),
             "--socket", str(paths["socket"]), "--lock", str(paths["lock"]), "--entry", entry,
             "--ready-fd", str(ready_w)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, pass_fds=(ready_w,),
        )
    finally:
        os.close(ready_w)
        os.close(log)
    message = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    with os.fdopen(ready_r, "rb", buffering=0) as ready:
        while time.monotonic() < deadline:
            if not select.select([ready], [], [], 1.0)[0]:
                continue
            chunk = ready.read(65536)
            if not chunk:
                break
            message += chunk
            if message == b"ready\n":
                sock = _connect(paths["socket"])
                if sock is None:
                    raise WorkerError(f"extraction worker {proc.pid} started but does not answer on {paths['socket']}")
                return sock
        else:
            proc.kill()
            raise WorkerError(f"extraction worker did not start within {START_TIMEOUT_S:.0f} s; see {paths['log']}")
    rc = proc.wait()
    try:
        tail = paths["log"].read_text(errors="replace")[-2000:]
    except OSError as err:
        tail = f"(unreadable: {err})"
    text = message.decode(errors="replace").strip() or "(no message)"
    raise WorkerError(f"extraction worker exited with {rc} while starting: {text}\nits log ({paths['log']}):\n{tail}")


def _check_peer(sock: socket.socket, path: Path) -> int:
    """The worker's pid, after checking it runs as us: a socket another user swapped in gets nothing."""
    pid, uid = _peer_uid(sock)
    if uid != os.getuid():
        raise WorkerError(f"refusing worker socket {path}: it is served by uid {uid} (pid {pid}), not by you "
                          f"(uid {os.getuid()})")
    return pid


def check_entry(entry: str) -> str:
    """``entry`` if it is one of the extraction entry points: a worker runs nothing else."""
    if entry not in ENTRIES:
        raise ValueError(f"entry {entry!r} is not an extraction entry point (one of {', '.join(ENTRIES)})")
    return entry


def entry_main(entry: str) -> Any:
    """``main`` of the entry module (imported once per process)."""
    import importlib

    return importlib.import_module(check_entry(entry)).main


class _Signalled(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_signalled(signum: int, _frame: Any) -> None:
    raise _Signalled(signum)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def submit(pool: str, argv: list[str], threads: int = 1, entry: str = DEFAULT_ENTRY,
           record: str | None = None) -> int:
    """Run ``python -m <entry> <argv>`` on a resident worker of ``pool`` with this process's environment;
    its exit code (128 + signal number when this client was interrupted and the job cancelled)."""
    check_entry(entry)
    if os.environ.get(SWITCH_ENV, "1") == "0":
        return run_here(argv, threads, entry, record)
    key = fingerprint()
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "threads": int(threads), "entry": entry,
                          "env": dict(os.environ), "umask": _current_umask(), "record": record}).encode() + b"\n"
    old = {s: signal.signal(s, _raise_signalled) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        return _submit(pool, key, request, entry)
    except _Signalled as sig:  # before any worker took the job: nothing ran
        print(f"[worker] {sig}: job cancelled before it started", file=sys.stderr)
        return 128 + sig.signum
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _submit(pool: str, key: str, request: bytes, entry: str) -> int:
    slot, lock = _take_slot(pool, key)
    try:
        paths = slot_paths(pool, slot, key)
        for _ in range(3):  # a worker that was exiting when we connected acknowledges nothing: the next one
            sock = _connect(paths["socket"]) or _start_worker(pool, slot, paths, entry)
            with sock, sock.makefile("rb") as replies:
                pid = _check_peer(sock, paths["socket"])
                sys.stdout.flush()
                sys.stderr.flush()
                try:
                    socket.send_fds(sock, [request], [1, 2])
                except (BrokenPipeError, ConnectionResetError):
                    continue
                try:
                    try:
                        acked = replies.readline()
                    except ConnectionResetError:  # it closed with our request unread: it was exiting
                        acked = b""
                    if not acked:
                        continue
                    try:
                        reply = replies.readline()
                    except ConnectionResetError:  # died while running the job (reported below)
                        reply = b""
                except _Signalled as sig:
                    return _cancel(sock, replies, pid, sig.signum)
            if not reply:
                print(f"[worker] extraction worker {pid} (pool {pool}, slot {slot}) died while running this job; "
                      f"its log: {paths['log']}", file=sys.stderr)
                return 1
            return int(json.loads(reply)["rc"])
        raise WorkerError(f"no extraction worker of pool {pool} slot {slot} accepted the job; see {paths['log']}")
    finally:
        os.close(lock)


def _cancel(sock: socket.socket, replies: Any, pid: int, signum: int) -> int:
    """This client was signalled: close our side (the worker cancels the job) and wait for it to stop."""
    signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the wait short
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    sock.settimeout(CANCEL_WAIT_S)
    with contextlib.suppress(OSError, _Signalled):
        replies.read()
    print(f"[worker] {signal.Signals(signum).name}: job cancelled on extraction worker {pid}", file=sys.stderr)
    return 128 + signum


def run_here(argv: list[str], threads: int, entry: str = DEFAULT_ENTRY, record: str | None = None) -> int:
    """The per-process path: the job runs in this process (``AVLOC_WORKER=0``), measured the same way."""
    main = entry_main(entry)
    _set_torch_threads(max(1, threads))
    meter = _Meter()
    rc = 1
    try:
        rc = _exit_code(main, argv)
    finally:
        _report(meter.stop(), rc, "in-process", record)
    return rc


def _exit_code(main: Any, argv: list[str]) -> int:
    """``main(argv)``'s exit status as Python's own exit would give it: None is 0, SystemExit's code too."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors, sys.exit()
        rc = exc.code
        if rc is not None and not isinstance(rc, int):
            print(rc, file=sys.stderr)
            rc = 1
    return 0 if rc is None else int(rc)


# pools whose jobs need no torch (``extract media``): their workers import only extractors.media, so the
# media rule runs in an environment without torch (envs/media.yaml, docs/architecture.md)
TORCH_FREE_POOLS = frozenset({"media"})


def _set_torch_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` when torch is installed (not in the media environment)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def _set_loaded_torch_threads(n: int) -> None:
    """A worker's per-job thread setting: torch pools import torch at start, torch-free pools only see
    it if a job imported it (media jobs never do)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------- accounting
def _status_mb(field: str) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def _cuda() -> Any:
    """torch.cuda when this process has initialised CUDA, else None (never initialises it)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda
    return None


class _Meter:
    """One job's own resources: wall, CPU (the process's and its finished children's), the process's
    peak RSS during the job (the kernel's high-water mark, reset at the start) and CUDA's peak memory."""

    def __init__(self) -> None:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM: the peak of this job, not of the worker's life
        self.rss_start = _status_mb("VmRSS")
        if (cuda := _cuda()) is not None:
            cuda.reset_peak_memory_stats()
        self.self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.t0 = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        s1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        usage: dict[str, Any] = {
            "wall_s": round(wall, 3),
            "cpu_s": round(s1.ru_utime + s1.ru_stime - self.self0.ru_utime - self.self0.ru_stime, 3),
            "children_cpu_s": round(c1.ru_utime + c1.ru_stime - self.child0.ru_utime - self.child0.ru_stime, 3),
            "max_rss_mb": round(_status_mb("VmHWM") or s1.ru_maxrss / 1024, 1),
            "rss_at_start_mb": round(self.rss_start or 0.0, 1),
            "largest_child_max_rss_mb": round(c1.ru_maxrss / 1024, 1),
            "pid": os.getpid(),
        }
        if (cuda := _cuda()) is not None:
            usage["cuda_device"] = cuda.current_device()
            usage["cuda_max_allocated_mb"] = round(cuda.max_memory_allocated() / 2**20, 1)
            usage["cuda_max_reserved_mb"] = round(cuda.max_memory_reserved() / 2**20, 1)
        return usage


def _report(usage: dict[str, Any], rc: int, mode: str, record: str | None) -> None:
    """The job's accounting at the end of its log and, with ``record``, as JSON there (atomic)."""
    cuda = (f", CUDA peak {usage['cuda_max_allocated_mb']:.0f} MB allocated / {usage['cuda_max_reserved_mb']:.0f} MB "
            "reserved") if "cuda_max_allocated_mb" in usage else ""
    print(f"[worker] job resources ({mode}, pid {usage['pid']}): wall {usage['wall_s']:.2f} s, cpu "
          f"{usage['cpu_s']:.2f} s (+{usage['children_cpu_s']:.2f} s in child processes), peak RSS "
          f"{usage['max_rss_mb']:.0f} MB{cuda}", file=sys.stderr, flush=True)
    if record:
        path = Path(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({**usage, "rc": rc, "mode": mode}, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- server
def _redirect_stdio(fds: tuple[int, int]) -> None:
    """Flush Python's buffers, point file descriptors 1 and 2 at ``fds`` and close those."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in fds:
        os.close(fd)


def _children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc; no psutil in the media environment)."""
    kids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat_line = Path(entry.path, "stat").read_text()
            state, ppid = stat_line[stat_line.rindex(")") + 2:].split()[:2]
            if int(ppid) == pid and state != "Z":
                kids.append(int(entry.name))
    return kids


def kill_descendants(pid: int) -> list[int]:
    """SIGKILL every descendant of ``pid`` (ffmpeg children of a job run in their own process groups,
    so a process-group kill would miss them); their pids."""
    todo, seen = [pid], []
    while todo:
        for kid in _children_of(todo.pop()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGSTOP)  # no new children while we look further down
            seen.append(kid)
            todo.append(kid)
    for kid in seen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(kid, signal.SIGKILL)
    return seen


def remove_job_temp_files(job: dict[str, Any]) -> list[str]:
    """Remove a job's temporary files: its private temp folder and the ``.<name>.tmp-<pid>.<ext>`` files
    that the extractors write beside each output before renaming (:func:`extractors.io.atomic_path`)."""
    removed = []
    if job.get("tmp") and os.path.isdir(job["tmp"]):
        shutil.rmtree(job["tmp"], ignore_errors=True)
        removed.append(job["tmp"])
    for arg in job.get("argv", []):
        if arg.startswith("-") or len(arg) > 1024 or "\n" in arg:
            continue
        p = Path(job.get("cwd", "."), arg)
        for ext in {p.suffix, ".mp4", ".wav", ".json", ".npy", ".npz"}:
            tmp = p.with_name(f".{p.stem}.tmp-{job['pid']}{ext}")
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(str(tmp))
    return removed


class _Job:
    """One request applied to this process for its duration: the client's environment, umask, working
    directory, a private temp folder, its stdout/stderr; everything restored by :meth:`restore`."""

    def __init__(self, request: dict[str, Any], fds: list[int]) -> None:
        self.request = request
        self.saved_env = dict(os.environ)
        try:
            self.saved_cwd = os.getcwd()
        except FileNotFoundError:  # the folder this worker was in has been removed: never a reason to fail a job
            self.saved_cwd = "/"
        self.saved_tempdir = tempfile.tempdir
        self.saved_fds = os.dup(1), os.dup(2)
        _redirect_stdio((fds[0], fds[1]))  # the job's own stdout/stderr: its Snakemake log
        self.saved_umask = os.umask(request["umask"])
        self.tmp: str | None = None

    def apply(self) -> None:
        """The job's environment (may fail, e.g. its cwd is gone: the job fails, :meth:`restore` still works)."""
        os.environ.clear()
        os.environ.update(self.request["env"])
        os.chdir(self.request["cwd"])
        tempfile.tempdir = None  # recomputed from the job's TMPDIR
        self.tmp = tempfile.mkdtemp(prefix="avloc-job-")
        tempfile.tempdir = self.tmp

    def notes(self) -> dict[str, Any]:
        return {"argv": self.request["argv"], "cwd": self.request["cwd"], "tmp": self.tmp, "pid": os.getpid()}

    def restore(self) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        tempfile.tempdir = self.saved_tempdir
        os.umask(self.saved_umask)
        os.environ.clear()
        os.environ.update(self.saved_env)
        with contextlib.suppress(OSError):
            os.chdir(self.saved_cwd)
        _redirect_stdio(self.saved_fds)


def _valid_request(request: Any) -> str | None:
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


class _Server:
    def __init__(self, pool: str, slot: int, socket_path: Path, lock_path: Path, notes_fd: int | None) -> None:
        self.pool, self.slot, self.socket_path, self.lock_path = pool, slot, socket_path, lock_path
        self.notes_fd = notes_fd
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600, whatever the umask
        try:
            self.srv.bind(str(socket_path))
        finally:
            os.umask(old)
        os.chmod(socket_path, 0o600)
        self.ino = os.stat(socket_path).st_ino
        self.srv.listen(4)
        self.jobs = 0

    def note(self, job: dict[str, Any] | None) -> None:
        """Tell the supervisor which job runs (so it can clean up after a kill -9 of this process)."""
        if self.notes_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.notes_fd, json.dumps(job).encode() + b"\n")

    def stop_listening(self) -> None:
        """Remove our socket (only ours: a successor may own the path) and close it; a client already in
        the backlog gets no acknowledgement and retries."""
        with contextlib.suppress(OSError):
            if os.stat(self.socket_path).st_ino == self.ino:
                self.socket_path.unlink()
        self.srv.close()

    def may_exit(self) -> bool:
        """Stop listening while holding the slot's lock, so no client can connect in between; False
        when a client holds the slot."""
        fd = _open_private(self.lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self.stop_listening()
            return True
        finally:
            os.close(fd)

    def handle(self, conn: socket.socket) -> tuple[int, bool]:
        """Run one job; (exit code, whether this worker may serve another)."""
        pid, uid = _peer_uid(conn)
        if uid != os.getuid():
            print(f"[worker] refused a connection from uid {uid} (pid {pid}): not this worker's user", flush=True)
            return 0, True
        fds: list[int] = []
        try:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
            while not data.endswith(b"\n"):
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        except OSError as err:  # the client went away before its request arrived: nothing to run
            for fd in fds:
                os.close(fd)
            print(f"[worker] no request from pid {pid}: {err}", flush=True)
            return 0, True
        try:
            request = json.loads(data)
        except ValueError:
            request = None
        why = _valid_request(request) if len(fds) == 2 else "no stdout/stderr descriptors"
        if why:
            for fd in fds:
                os.close(fd)
            print(f"[worker] refused a request from pid {pid}: {why}", flush=True)
            return 0, True
        try:
            conn.sendall(json.dumps({"accepted": True, "pid": os.getpid()}).encode() + b"\n")
        except OSError:  # the client went away before the job started
            for fd in fds:
                os.close(fd)
            return 0, True
        self.jobs += 1
        rc, job = 1, None
        try:
            job = _Job(request, fds)
            job.apply()
            self.note(job.notes())
            watch = _Watch(self, conn, job)
            _set_loaded_torch_threads(max(1, request["threads"]))
            meter = _Meter()
            try:
                rc = _exit_code(entry_main(request["entry"]), request["argv"])
            except BaseException:  # noqa: BLE001 - reported in the job's log, the job fails
                traceback.print_exc()
                rc = 1
            finally:
                watch.stop()
            _report(meter.stop(), rc, f"worker job {self.jobs}", request["record"])
        except BaseException:  # noqa: BLE001 - the job's environment could not be applied (e.g. its cwd is gone)
            traceback.print_exc()
            rc = 1
        finally:
            if job is not None:
                job.restore()
            elif fds:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self.note(None)
        if rc != 0:  # stop taking jobs before replying: the next client of this slot starts a fresh worker
            self.stop_listening()
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")
        return rc, rc == 0


class _Watch:
    """Watches the job's connection while it runs: when the client goes away (killed, or it closed its
    side after SIGINT/SIGTERM), the job is cancelled: children killed, temp files removed, this worker
    exits before the job can publish anything."""

    def __init__(self, server: _Server, conn: socket.socket, job: _Job) -> None:
        self.server, self.conn, self.job = server, conn, job
        self.stop_r, self.stop_w = os.pipe()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="avloc-job-watch", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        os.write(self.stop_w, b"x")
        self.thread.join()
        os.close(self.stop_r)
        os.close(self.stop_w)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        poller.register(self.stop_r, select.POLLIN)
        while True:
            events = dict(poller.poll())
            if self.stop_r in events:
                return
            if events:
                break
        self.server.stop_listening()
        killed = len(kill_descendants(os.getpid()))
        removed = remove_job_temp_files(self.job.notes())
        msg = (f"[worker] job cancelled after {time.monotonic() - self.t0:.1f} s: its client went away (Snakemake "
               f"stopped the job, or it was interrupted). Killed {killed} child process(es), removed "
               f"{len(removed)} temporary file(s)/folder(s); nothing was published. Worker {os.getpid()} exits.\n")
        with contextlib.suppress(OSError):
            os.write(2, msg.encode())  # the job's log
        with contextlib.suppress(OSError):
            os.write(self.job.saved_fds[1], msg.encode())  # the worker's log
        os._exit(0)


def serve(pool: str, slot: int, socket_path: Path, lock_path: Path, idle_s: float, entry: str = DEFAULT_ENTRY,
          ready_fd: int | None = None, notes_fd: int | None = None, gpu_idle_s: float = DEFAULT_GPU_IDLE_S) -> int:
    """The worker's loop: load what jobs need once, then run one job per connection until idle."""
    import gc

    import extractors.media  # noqa: F401 - everything a job may import, imported before the first job

    entry_main(entry)  # the starting job's entry (later jobs of the pool may name another)

    if pool not in TORCH_FREE_POOLS:
        import torch

        import extractors.i3d  # noqa: F401
        import extractors.r21d  # noqa: F401
        import extractors.vggish  # noqa: F401
        from extractors.weights import keep_networks_resident

        keep_networks_resident(True)
        if torch.cuda.is_available():
            torch.cuda.set_device(slot % torch.cuda.device_count())
    socket_path, lock_path = Path(socket_path).absolute(), Path(lock_path).absolute()
    server = _Server(pool, slot, socket_path, lock_path, notes_fd)
    os.chdir("/")  # idle where no job's folder is: the starting job's working dir may be deleted after it ends
    try:
        server.note({"socket_ino": server.ino})
        print(f"[worker] pool {pool} slot {slot} pid {os.getpid()} listening on {socket_path}", flush=True)
        if ready_fd is not None:
            os.write(ready_fd, b"ready\n")
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, ready_fd)  # the number stays taken: a later error report goes nowhere, not a job's fd
            os.close(devnull)
        while True:
            cuda = _cuda()
            server.srv.settimeout(min(idle_s, gpu_idle_s) if cuda is not None else idle_s)
            try:
                conn, _ = server.srv.accept()
            except TimeoutError:
                if server.may_exit():
                    print(f"[worker] idle after {server.jobs} jobs: exiting", flush=True)
                    return 0
                continue
            with conn:
                conn.settimeout(None)
                rc, more = server.handle(conn)
            gc.collect()
            if (cuda := _cuda()) is not None:
                cuda.empty_cache()  # what the job cached is free for other processes
            if not more:
                print(f"[worker] job {server.jobs} failed (rc {rc}): exiting so the next job gets a fresh process",
                      flush=True)
                return 0
    finally:
        server.stop_listening()


def supervise(args: argparse.Namespace, idle_s: float, gpu_idle_s: float) -> int:
    """Run the worker in a child process and clean up after it, however it ends: kill what it left
    running (as a child subreaper this process inherits its orphans) and remove the temporary files of
    the job it was running. Signals to this process are passed on to the worker."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    notes_r, notes_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(notes_r)
        rc = 1
        try:
            rc = serve(args.pool, args.slot, args.socket, args.lock, idle_s, args.entry, args.ready_fd, notes_w,
                       gpu_idle_s)
        except BaseException:  # noqa: BLE001 - start-up errors go to the client through the ready pipe
            text = traceback.format_exc()
            if args.ready_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(args.ready_fd, text.encode())
            with contextlib.suppress(OSError):
                print(text, file=sys.stderr, flush=True)
        finally:
            with contextlib.suppress(OSError):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(rc)
    os.close(notes_w)
    if args.ready_fd is not None:
        os.close(args.ready_fd)
    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, forward)
    job, socket_ino, buf = None, None, b""
    while chunk := os.read(notes_r, 65536):  # EOF: the worker is gone
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            note = json.loads(line)
            if isinstance(note, dict) and "socket_ino" in note:
                socket_ino = note["socket_ino"]
            else:
                job = note
    _, status = os.waitpid(pid, 0)
    with contextlib.suppress(OSError):  # a killed worker's socket, if still its own (no successor's)
        if os.stat(args.socket).st_ino == socket_ino:
            args.socket.unlink()
    killed: set[int] = set()
    for _ in range(2):  # the worker's orphans are our children now (subreaper); then theirs
        for kid in kill_descendants(os.getpid()):
            killed.add(kid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(kid, 0)
    if job is not None or killed:
        removed = remove_job_temp_files(job) if job else []
        print(f"[worker] worker {pid} ended ({_describe(status)}) during a job: killed {len(killed)} leftover process(es), "
              f"removed {len(removed)} temporary file(s)/folder(s)", flush=True)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1


def _describe(status: int) -> str:
    return f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        ap = argparse.ArgumentParser(prog="python -m extractors.worker serve")
        ap.add_argument("--pool", required=True)
        ap.add_argument("--slot", type=int, required=True)
        ap.add_argument("--socket", type=Path, required=True)
        ap.add_argument("--lock", type=Path, required=True)
        ap.add_argument("--entry", default=DEFAULT_ENTRY)
        ap.add_argument("--ready-fd", type=int, default=None, help="pipe that gets 'ready' or the start-up error")
        args = ap.parse_args(argv[1:])
        idle = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S))
        gpu_idle = float(os.environ.get(GPU_IDLE_ENV, DEFAULT_GPU_IDLE_S))
        return supervise(args, idle, gpu_idle)
    ap = argparse.ArgumentParser(
        prog="python -m extractors.worker",
        description="Run one `python -m extractors.extract` (or --entry) job on a resident worker of POOL.",
        usage="python -m extractors.worker POOL [--threads N] [--entry MODULE] [--record PATH] -- EXTRACT_ARGS...")
    ap.add_argument("pool", help="worker pool (jobs of one pool share workers), e.g. media or features")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for this job")
    ap.add_argument("--entry", default=DEFAULT_ENTRY, help=f"the job's entry point: one of {', '.join(ENTRIES)}")
    ap.add_argument("--record", default=None,
                    help="write the job's own resources (wall, CPU, peak RSS, CUDA peak) as JSON here")
    if "--" not in argv:
        ap.error("missing '--' before the extraction arguments")
    split = argv.index("--")
    args = ap.parse_args(argv[:split])
    try:
        check_entry(args.entry)
    except ValueError as err:
        ap.error(str(err))
    try:
        return submit(args.pool, argv[split + 1:], args.threads, args.entry, args.record)
    except WorkerError as err:
        print(f"[worker] {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
