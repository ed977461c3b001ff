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
arguments, working directory, thread count and its own stdout/stderr file descriptors (so everything
the job prints lands in the job's Snakemake log, as before). The worker runs the job's *entry*
in-process: ``main(argv)`` of :mod:`extractors.extract` by default, or of the module ``--entry`` names
(a module of this package, e.g. ``extractors.llp.extract`` for LLP's per-clip jobs; the rule chooses it,
so this module depends on no extractor) with :func:`extractors.weights.keep_networks_resident` on,
replies with the exit code, and waits for the next job. It exits after ``AVLOC_WORKER_IDLE_S``
seconds without work (default 120; only when no client holds its slot, so no job can be lost to the
exit), after any failed job (a fresh process for the next one), and never serves a job of other
code: the socket name includes a fingerprint of the Python executable, this package's source files
and the environment that picks the GPU (``CUDA_VISIBLE_DEVICES``, ``SLURM_JOB_ID``).

Slot ``i`` of a pool uses GPU ``i mod n_gpus`` when the job asks for CUDA, so a workstation running N
GPU jobs at once (``resources: gpu: N``) spreads them over its N GPUs. On SLURM the grouped jobs of one
submission run on one node and share that node's workers; SLURM ends them with the submission.

``AVLOC_WORKER=0`` runs each job in its own process instead (the per-process design, kept for
debugging and as the reference of ``bench/extract_overhead_bench.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import IO, Any

PACKAGE_DIR = Path(__file__).resolve().parent
SWITCH_ENV = "AVLOC_WORKER"
IDLE_ENV = "AVLOC_WORKER_IDLE_S"
DIR_ENV = "AVLOC_WORKER_DIR"
DEFAULT_IDLE_S = 120.0
START_TIMEOUT_S = 600.0
DEFAULT_ENTRY = "extractors.extract"  # the module whose main(argv) runs a job unless --entry names another
_FINGERPRINT_ENV = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_STEP_ID", SWITCH_ENV)


def worker_dir() -> Path:
    """Node-local folder for the sockets, locks and logs (``$AVLOC_WORKER_DIR``, else the temp dir);
    kept short because a Unix socket path is limited to about 100 bytes."""
    base = os.environ.get(DIR_ENV) or os.path.join(tempfile.gettempdir(), f"avloc-workers-{os.getuid()}")
    if len(base) > 60:
        base = f"/tmp/avloc-workers-{os.getuid()}"
    path = Path(base)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def fingerprint() -> str:
    """Which code and environment a worker runs: jobs only go to a worker with the same fingerprint."""
    h = hashlib.sha1()
    h.update(f"{sys.executable}|{sys.version}|{PACKAGE_DIR}".encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        st = path.stat()
        h.update(f"|{path.relative_to(PACKAGE_DIR)}:{st.st_size}:{st.st_mtime_ns}".encode())
    for name in _FINGERPRINT_ENV:
        h.update(f"|{name}={os.environ.get(name, '')}".encode())
    return h.hexdigest()[:16]


def slot_paths(pool: str, slot: int, key: str | None = None) -> dict[str, Path]:
    stem = worker_dir() / f"{key or fingerprint()}-{pool}-{slot}"
    return {"lock": stem.with_suffix(".lock"), "socket": stem.with_suffix(".sock"), "log": stem.with_suffix(".log")}


# ----------------------------------------------------------------------------------------------- client
def _take_slot(pool: str, key: str) -> tuple[int, IO[str]]:
    """Lock the first free slot of ``pool``; the lock is held until the job ends."""
    for slot in itertools.count():
        fh = open(slot_paths(pool, slot, key)["lock"], "a+")  # noqa: SIM115 - held for the whole job
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        return slot, fh
    raise AssertionError("unreachable")


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


def _start_worker(pool: str, slot: int, paths: dict[str, Path], entry: str = DEFAULT_ENTRY) -> socket.socket:
    """Start the slot's worker (a new session, so it outlives this job) and connect once it listens."""
    with contextlib.suppress(FileNotFoundError):
        paths["socket"].unlink()  # stale: nobody listens (we hold the slot's lock)
    with open(paths["log"], "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "extractors.worker", "serve", "--pool", pool, "--slot", str(slot),
             "--socket", str(paths["socket"]), "--lock", str(paths["lock"]), "--entry", entry],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        sock = _connect(paths["socket"])
        if sock is not None:
            return sock
        if proc.poll() is not None:
            tail = paths["log"].read_text(errors="replace")[-3000:]
            raise RuntimeError(f"extraction worker exited with {proc.returncode} while starting; "
                               f"its log ({paths['log']}):\n{tail}")
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"extraction worker did not start within {START_TIMEOUT_S:.0f} s; see {paths['log']}")


def _read_line(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def check_entry(entry: str) -> str:
    """``entry`` if it names a module of this package: a worker never runs code its fingerprint does not cover."""
    if not entry.startswith(PACKAGE_DIR.name + "."):
        raise ValueError(f"entry {entry!r} is not a module of the {PACKAGE_DIR.name} package")
    return entry


def entry_main(entry: str) -> Any:
    """``main`` of the entry module (imported once per process)."""
    import importlib

    return importlib.import_module(check_entry(entry)).main


def submit(pool: str, argv: list[str], threads: int = 1, entry: str = DEFAULT_ENTRY) -> int:
    """Run ``python -m <entry> <argv>`` on a resident worker of ``pool``; its exit code."""
    check_entry(entry)
    if os.environ.get(SWITCH_ENV, "1") == "0":
        return run_here(argv, threads, entry)
    key = fingerprint()
    slot, lock = _take_slot(pool, key)
    with lock:
        paths = slot_paths(pool, slot, key)
        sock = _connect(paths["socket"]) or _start_worker(pool, slot, paths, entry)
        with sock:
            request = {"argv": argv, "cwd": os.getcwd(), "threads": int(threads), "entry": entry}
            sys.stdout.flush()
            sys.stderr.flush()
            socket.send_fds(sock, [json.dumps(request).encode() + b"\n"], [1, 2])
            reply = _read_line(sock)
    if not reply:
        print(f"extraction worker (pool {pool}, slot {slot}) died while running this job; its log: "
              f"{paths['log']}", file=sys.stderr)
        return 1
    return int(json.loads(reply)["rc"])


def run_here(argv: list[str], threads: int, entry: str = DEFAULT_ENTRY) -> int:
    """The per-process path: the job runs in this process (``AVLOC_WORKER=0``)."""
    main = entry_main(entry)
    _set_torch_threads(max(1, threads))
    return main(argv)


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


# ----------------------------------------------------------------------------------------------- server
def _redirect_stdio(fds: tuple[int, int]) -> None:
    """Flush Python's buffers, point file descriptors 1 and 2 at ``fds`` and close those."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in fds:
        os.close(fd)


def _handle(conn: socket.socket) -> int:
    first, fds, _, _ = socket.recv_fds(conn, 65536, 2)
    request = json.loads(first if first.endswith(b"\n") else first + _read_line(conn))
    saved = os.dup(1), os.dup(2)
    _redirect_stdio((fds[0], fds[1]))  # the job's own stdout/stderr: its Snakemake log
    try:
        os.chdir(request["cwd"])
        _set_loaded_torch_threads(max(1, int(request["threads"])))
        try:
            rc = entry_main(request.get("entry", DEFAULT_ENTRY))(request["argv"])
        except SystemExit as exc:  # argparse errors
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported in the job's log, the job fails
            traceback.print_exc()
            rc = 1
    finally:
        _redirect_stdio(saved)
    conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")
    return int(rc or 0)


def _may_exit(lock_path: Path) -> bool:
    """True when no client holds the slot (then none can be connecting to us either)."""
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def serve(pool: str, slot: int, socket_path: Path, lock_path: Path, idle_s: float,
          entry: str = DEFAULT_ENTRY) -> int:
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
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(socket_path))
    srv.listen(4)
    srv.settimeout(idle_s)
    print(f"[worker] pool {pool} slot {slot} pid {os.getpid()} listening on {socket_path}", flush=True)
    jobs = 0
    try:
        while True:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                if _may_exit(lock_path):
                    print(f"[worker] idle for {idle_s:g} s after {jobs} jobs: exiting", flush=True)
                    return 0
                continue
            with conn:
                conn.settimeout(None)
                rc = _handle(conn)
            jobs += 1
            gc.collect()
            if rc != 0:
                print(f"[worker] job {jobs} failed (rc {rc}): exiting so the next job gets a fresh process",
                      flush=True)
                return 0
    finally:
        srv.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        ap = argparse.ArgumentParser(prog="python -m extractors.worker serve")
        ap.add_argument("--pool", required=True)
        ap.add_argument("--slot", type=int, required=True)
        ap.add_argument("--socket", type=Path, required=True)
        ap.add_argument("--lock", type=Path, required=True)
        ap.add_argument("--entry", default=DEFAULT_ENTRY)
        args = ap.parse_args(argv[1:])
        idle = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S))
        return serve(args.pool, args.slot, args.socket, args.lock, idle, args.entry)
    ap = argparse.ArgumentParser(
        prog="python -m extractors.worker",
        description="Run one `python -m extractors.extract` (or --entry) job on a resident worker of POOL.",
        usage="python -m extractors.worker POOL [--threads N] [--entry MODULE] -- EXTRACT_ARGS...")
    ap.add_argument("pool", help="worker pool (jobs of one pool share workers), e.g. media or features")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for this job")
    ap.add_argument("--entry", default=DEFAULT_ENTRY,
                    help="module of this package whose main(argv) runs the job, e.g. extractors.llp.extract")
    if "--" not in argv:
        ap.error("missing '--' before the extraction arguments")
    split = argv.index("--")
    args = ap.parse_args(argv[:split])
    try:
        check_entry(args.entry)
    except ValueError as err:
        ap.error(str(err))
    return submit(args.pool, argv[split + 1:], args.threads, args.entry)


if __name__ == "__main__":
    sys.exit(main())
