"""The client half: each Snakemake job's ``python -m extractors.worker POOL -- ...`` takes a slot, starts or
reaches its worker, hands over the job with its environment and stdout/stderr, and waits for the exit code
(cancelling the job when this client is signalled)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from extractors.worker.accounting import Meter, report
from extractors.worker.jobs import exit_code, set_torch_threads
from extractors.worker.protocol import (
    CANCEL_WAIT_S,
    DEFAULT_ENTRY,
    START_TIMEOUT_S,
    SWITCH_ENV,
    WorkerError,
    check_entry,
    connect,
    entry_main,
    fingerprint,
    open_private,
    peer_uid,
    slot_paths,
    sweep_stale,
)


def _take_slot(pool: str, key: str) -> tuple[int, int]:
    """Lock the first free slot of ``pool`` (fd of its lock file); the lock is held until the job ends."""
    slot = 0
    while True:
        path = slot_paths(pool, slot, key)["lock"]
        fd = open_private(path, os.O_RDWR)
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


def _start_worker(pool: str, slot: int, paths: dict[str, Path], entry: str = DEFAULT_ENTRY) -> socket.socket:
    """Start the slot's worker (a new session, so it outlives this job) and connect once it listens; a
    start failure is reported with the worker's own message (sent over a pipe, so a full disk that
    swallows the log still says why)."""
    with contextlib.suppress(FileNotFoundError):
        paths["socket"].unlink()  # stale: nobody listens (we hold the slot's lock)
    sweep_stale(paths["lock"].parent, paths["lock"].name.split("-")[0])  # the key: our fingerprint
    log = open_private(paths["log"], os.O_WRONLY | os.O_APPEND)
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
                sock = connect(paths["socket"])
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
    pid, uid = peer_uid(sock)
    if uid != os.getuid():
        raise WorkerError(f"refusing worker socket {path}: it is served by uid {uid} (pid {pid}), not by you "
                          f"(uid {os.getuid()})")
    return pid


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
            sock = connect(paths["socket"]) or _start_worker(pool, slot, paths, entry)
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
                        accepted = replies.readline()
                    except ConnectionResetError:  # it closed with our request unread (it was exiting): not run
                        accepted = b""
                    if not accepted:
                        continue
                    try:
                        reply = replies.readline()
                    except ConnectionResetError:  # it died while running the job: reported below
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
    set_torch_threads(max(1, threads))
    meter = Meter()
    rc = 1
    try:
        rc = exit_code(main, argv)
    finally:
        report(meter.stop(), rc, "in-process", record)
    return rc


