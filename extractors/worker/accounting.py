"""A job's own resources (wall, CPU, peak RSS, CUDA peak), written to its log and its ``--record`` JSON."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def status_mb(field: str) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def initialised_cuda() -> Any:
    """torch.cuda when this process has initialised CUDA, else None (never initialises it)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda
    return None


class Meter:
    """One job's own resources: wall, CPU (the process's and its finished children's), the process's
    peak RSS during the job (the kernel's high-water mark, reset at the start) and CUDA's peak memory."""

    def __init__(self) -> None:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM: the peak of this job, not of the worker's life
        self.rss_start = status_mb("VmRSS")
        if (cuda := initialised_cuda()) is not None:
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
            "max_rss_mb": round(status_mb("VmHWM") or s1.ru_maxrss / 1024, 1),
            "rss_at_start_mb": round(self.rss_start or 0.0, 1),
            "largest_child_max_rss_mb": round(c1.ru_maxrss / 1024, 1),
            "pid": os.getpid(),
        }
        if (cuda := initialised_cuda()) is not None:
            usage["cuda_device"] = cuda.current_device()
            usage["cuda_max_allocated_mb"] = round(cuda.max_memory_allocated() / 2**20, 1)
            usage["cuda_max_reserved_mb"] = round(cuda.max_memory_reserved() / 2**20, 1)
        return usage


def report(usage: dict[str, Any], rc: int, mode: str, record: str | None) -> None:
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


