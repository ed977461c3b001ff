"""``python -m extractors.worker POOL -- ARGS`` (a job's client) and ``... serve`` (a worker, started by a client)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from extractors.worker.client import submit
from extractors.worker.protocol import (
    DEFAULT_ENTRY,
    DEFAULT_GPU_IDLE_S,
    DEFAULT_IDLE_S,
    ENTRIES,
    GPU_IDLE_ENV,
    IDLE_ENV,
    WorkerError,
    check_entry,
)
from extractors.worker.supervisor import supervise


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
