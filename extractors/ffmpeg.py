"""The ffmpeg binary and how we run it: an argument list (never a shell), ``file:`` URLs, and its failures
sorted into the video's fault (:class:`~extractors.errors.MediaError`), the machine's (``OSError``) and a stop
from outside (``InterruptedError``)."""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from extractors.errors import MediaError


def ffmpeg_exe() -> str:
    """The ffmpeg binary: imageio-ffmpeg's static build (there is no system ffmpeg here)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_FFMPEG_CASCADE = (  # consequences ffmpeg (7+, threaded CLI) prints after the real error
    "conversion failed",
    "exiting with exit code",
    "error opening output file",
    "error while opening encoder",
    "could not open encoder before eof",
    "error sending frames to consumers",
    "task finished with error code",
    "terminating thread with return code",
    "nothing was written into output file",
    "error while processing the decoded data",
)


def last_meaningful_line(stderr: str) -> str:
    """The last stderr line that is not one of ffmpeg's cascade messages, without the
    ``[component @ 0x...]`` prefixes, e.g. 'width not divisible by 2 (175x143)'."""
    lines = [re.sub(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*)+", "", ln.strip()) for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln]
    for ln in reversed(lines):
        if not any(g in ln.lower() for g in _FFMPEG_CASCADE):
            return ln
    return lines[-1] if lines else "ffmpeg failed without a message"


#: errno values whose message in ffmpeg's stderr means the environment failed (full disk, read-only or
#: missing output folder, memory), raised as OSError rather than MediaError (extractors/errors.py)
_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOMEM)


def run_ffmpeg(src: Path, args: Sequence[str], what: str, capture_stdout: bool = False) -> bytes:
    """Run ffmpeg with an argument list (never a shell), raise MediaError with its last error line."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(
        cmd, stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        if proc.returncode < 0 or "received signal" in stderr:
            # stopped from outside (a cancelled job, the OOM killer): never the video's fault, never recorded
            sig = -proc.returncode if proc.returncode < 0 else "a"
            raise InterruptedError(f"ffmpeg {what} of {src} was stopped by {sig} signal")
        for code in _ENVIRONMENT_ERRNOS:  # the machine's fault, not the video's: never a recorded bad input
            if os.strerror(code) in stderr:
                raise OSError(code, f"ffmpeg {what} of {src}: {os.strerror(code)}")
        msg = last_meaningful_line(stderr)
        raise MediaError(src, f"ffmpeg {what} failed (exit {proc.returncode}): {msg}")
    return proc.stdout if capture_stdout else b""


def file_url(path: Path) -> str:
    """Explicit ``file:`` URL so names with ':' (or starting with '-') are never parsed as a
    protocol or an option by ffmpeg/PyAV."""
    return "file:" + str(path)


