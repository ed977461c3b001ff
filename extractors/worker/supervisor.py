"""The supervisor above each worker: whatever ends the worker (even ``kill -9``), kill what it left
running and remove the temporary files of the job it was running."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import traceback
from typing import Any

from extractors.worker.jobs import kill_descendants, remove_job_temp_files
from extractors.worker.server import serve


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


