"""The one line between an input's own fault and every other failure.

Why: a job that meets a bad *input* (it cannot be decoded, has no usable stream, is too short) records
the failure as its result so the rest of the dataset goes on; a job that meets anything else (a missing
temp dir, a full disk, a CUDA error, missing weights, a bug) must fail loudly, because recording it as a
bad input would silently drop a good video. Only :class:`ContentError` and its subclasses are the
input's fault; every caller that records a failure catches exactly this type.
"""

from __future__ import annotations

import os


class ContentError(Exception):
    """The input file itself cannot give features; ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
