"""One job inside a worker process: its environment applied and restored, its exit code, and the
clean-up of what a cancelled or killed job leaves (child processes, temporary files)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any


def exit_code(main: Any, argv: list[str]) -> int:
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


def set_torch_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` when torch is installed (not in the media environment)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def set_loaded_torch_threads(n: int) -> None:
    """A worker's per-job thread setting: torch pools import torch at start, torch-free pools only see
    it if a job imported it (media jobs never do)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def redirect_stdio(fds: tuple[int, int]) -> None:
    """Flush Python's buffers, point file descriptors 1 and 2 at ``fds`` and close those."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in fds:
        os.close(fd)


def children_of(pid: int) -> list[int]:
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
        for kid in children_of(todo.pop()):
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


class Job:
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
        redirect_stdio((fds[0], fds[1]))  # the job's own stdout/stderr: its Snakemake log
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
        redirect_stdio(self.saved_fds)


