"""``python -m extractors.weights fetch NAME... --root DIR`` / ``list``: the checkpoint registry's command line
(:mod:`extractors.weight_registry`: what each file is and where it comes from; :mod:`extractors.weight_files`:
download and verify; :mod:`extractors.weight_loading`: into a network)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from extractors.weight_files import fetch, verify
from extractors.weight_registry import DEFAULT_ROOT, REGISTRY, WeightsError, weights_path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m extractors.weights", description="Checkpoint registry: official URL, SHA-256 and converter of every network weight file we use.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pf = sub.add_parser("fetch", help="download and verify checkpoints")
    pf.add_argument("names", nargs="+", choices=sorted(REGISTRY), metavar="NAME")
    pf.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    pl = sub.add_parser("list", help="print the registry as JSON")
    pl.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = p.parse_args(argv)
    if args.cmd == "list":
        rows = [{**spec.__dict__, "path": str(weights_path(n, args.root)),
                 "present": weights_path(n, args.root).is_file()} for n, spec in REGISTRY.items()]
        print(json.dumps(rows, indent=2, default=list))
        return 0
    status = 0
    for n in args.names:
        try:
            path = fetch(n, args.root)
            print(f"{n}: {path} sha256={verify(n, args.root)}")
        except WeightsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
