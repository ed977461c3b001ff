"""The worker's loop: load what jobs need once, then run one job per connection until idle, cancelling a
job whose client went away."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from extractors.worker.accounting import Meter, initialised_cuda, report
from extractors.worker.jobs import (
    Job,
    exit_code,
    kill_descendants,
    remove_job_temp_files,
    set_loaded_torch_threads,
)
from extractors.worker.protocol import (
    DEFAULT_ENTRY,
    DEFAULT_GPU_IDLE_S,
    entry_main,
    open_private,
    peer_uid,
    valid_request,
)

# pools whose jobs need no torch (``extract media``): their workers import only extractors.media, so the
# media rule runs in an environment without torch (envs/media.yaml, docs/architecture.md)
TORCH_FREE_POOLS = frozenset({"media"})


class Server:
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
        fd = open_private(self.lock_path, os.O_RDWR)
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
        pid, uid = peer_uid(conn)
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
        why = valid_request(request) if len(fds) == 2 else "no stdout/stderr descriptors"
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
            job = Job(request, fds)
            job.apply()
            self.note(job.notes())
            watch = _Watch(self, conn, job)
            set_loaded_torch_threads(max(1, request["threads"]))
            meter = Meter()
            try:
                rc = exit_code(entry_main(request["entry"]), request["argv"])
            except BaseException:  # noqa: BLE001 - reported in the job's log, the job fails
                traceback.print_exc()
                rc = 1
            finally:
                watch.stop()
            report(meter.stop(), rc, f"worker job {self.jobs}", request["record"])
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

    def __init__(self, server: Server, conn: socket.socket, job: Job) -> None:
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
        from extractors.weight_loading import keep_networks_resident

        keep_networks_resident(True)
        if torch.cuda.is_available():
            torch.cuda.set_device(slot % torch.cuda.device_count())
    socket_path, lock_path = Path(socket_path).absolute(), Path(lock_path).absolute()
    server = Server(pool, slot, socket_path, lock_path, notes_fd)
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
            cuda = initialised_cuda()
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
            if (cuda := initialised_cuda()) is not None:
                cuda.empty_cache()  # what the job cached is free for other processes
            if not more:
                print(f"[worker] job {server.jobs} failed (rc {rc}): exiting so the next job gets a fresh process",
                      flush=True)
                return 0
    finally:
        server.stop_listening()


