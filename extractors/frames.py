"""Reference frame path of the I3D/RAFT recipe: decode, resize, and cut into sliding windows.

Conventions verified in v-iashin/video_features (docs/recipes.md, "UnAV-100"; read ``models/i3d/extract_i3d.py`` @02fae36,
``models/transforms.py`` @34b927c), and replicated exactly here:

- ``models/i3d/extract_i3d.py``: frames are read in order with ``cv2.VideoCapture(...).read()`` from the
  re-encoded constant-FPS mp4, converted with ``cv2.cvtColor(BGR2RGB)``; if the *first* read fails it is
  skipped (a re-encode quirk) and reading stops at the first later failure. The stack is processed when
  ``len(stack) - 1 == stack_size`` (a window of ``stack`` frames needs ``stack + 1`` frames, because
  flow is computed between consecutive frames), then ``stack = stack[step_size:]``; the incomplete last
  stack is never processed. (With ``step > stack + 1`` that slicing would make the reference advance by
  ``stack + 1``, not ``step``: unsupported here, see :func:`check_stack_step`.)
- ``models/transforms.py`` ``resize`` / ``ResizeImproved``: ``ToPILImage`` on the uint8 HWC array, then
  if the smaller side already equals ``size`` the image is returned untouched; otherwise the smaller side
  becomes ``size`` and the other ``int(size * long / short)`` (truncation), resized with
  ``PIL.Image.resize(..., Image.BILINEAR)`` — Pillow's BILINEAR resize is a convolution whose support
  widens with the down-scale factor, i.e. antialiased. ``PILToTensor`` + ``ToFloat`` then give float32
  values 0..255 (integer valued, since PIL returns uint8).

We keep frames as uint8 internally (their values are integers anyway: exact, and 4x less memory) and
convert to float32 at the network input. Nothing here holds more than one window (``stack + 1`` frames)
of a video in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


def resized_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Output ``(width, height)`` of the reference resize (smaller side → ``short_side``, long side
    truncated); unchanged when the smaller side already equals ``short_side``."""
    if (width <= height and width == short_side) or (height <= width and height == short_side):
        return width, height
    if width < height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def resize_frame(rgb: np.ndarray, short_side: int) -> np.ndarray:
    """Reference resize of one uint8 ``(H, W, 3)`` RGB frame with PIL bilinear (antialiased)."""
    h, w = rgb.shape[:2]
    ow, oh = resized_size(w, h, short_side)
    if (ow, oh) == (w, h):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((ow, oh), Image.BILINEAR))


def iter_frames(mp4_path: Path | str, short_side: int | None = 256) -> Iterator[np.ndarray]:
    """Yield uint8 ``(H, W, 3)`` RGB frames in decode order, resized as the reference does.

    ``short_side=None`` yields the decoded frames unresized.
    """
    cap = cv2.VideoCapture(str(mp4_path))
    if not cap.isOpened():
        raise OSError(f"OpenCV cannot open video {str(mp4_path)!r}")
    try:
        first = True
        while True:
            ok, bgr = cap.read()
            if first:
                first = False
                if not ok:  # reference quirk: a missing first frame is skipped, not an end of stream
                    continue
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield rgb if short_side is None else resize_frame(rgb, short_side)
    finally:
        cap.release()


def num_windows(n_frames: int, stack: int, step: int) -> int:
    """Number of complete windows: ``floor((N - stack - 1) / step) + 1`` (0 if ``N <= stack``)."""
    if n_frames < stack + 1:
        return 0
    return (n_frames - stack - 1) // step + 1


def num_pairs_needed(n_windows: int, stack: int, step: int) -> int:
    """Flow pairs ``(j, j+1)`` used by the first ``n_windows`` windows: ``(W-1)*step + stack``."""
    return 0 if n_windows == 0 else (n_windows - 1) * step + stack


def check_stack_step(stack: int, step: int) -> None:
    """Only ``1 <= step <= stack + 1`` is supported: for a larger step the reference's
    ``stack = stack[step:]`` empties the buffer and the next window starts ``stack + 1`` frames later, not
    ``step`` frames later, which would break the ``t * step`` time mapping of the recipe."""
    if stack < 1 or step < 1:
        raise ValueError(f"stack and step must be >= 1, got stack={stack}, step={step}")
    if step > stack + 1:
        raise ValueError(f"step={step} > stack+1={stack + 1} is not supported: the reference extractor would "
                         f"advance by stack+1 frames, not by step")


def iter_windows(frames: Iterator[np.ndarray], stack: int, step: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, window)`` with ``window`` a uint8 ``(stack + 1, H, W, 3)`` array of frames
    ``[t*step, t*step + stack]``; the buffer then drops ``step`` frames; an incomplete tail is dropped.
    Only ``stack + 1`` frames are buffered."""
    check_stack_step(stack, step)
    buf: list[np.ndarray] = []
    t = 0
    for frame in frames:
        buf.append(frame)
        if len(buf) == stack + 1:
            yield t, np.stack(buf)
            t += 1
            buf = buf[step:]


def count_frames(mp4_path: Path | str) -> int:
    """Count the frames the reference loop would read (decodes the whole video; no resize)."""
    cap = cv2.VideoCapture(str(mp4_path))
    if not cap.isOpened():
        raise OSError(f"OpenCV cannot open video {str(mp4_path)!r}")
    n = 0
    first = True
    try:
        while True:
            ok = cap.grab()
            if first:
                first = False
                if not ok:
                    continue
            if not ok:
                break
            n += 1
    finally:
        cap.release()
    return n


def prefetch(items: Iterator[np.ndarray], depth: int = 64) -> Iterator[np.ndarray]:
    """Run ``items`` (e.g. :func:`iter_frames`) in a background thread, ``depth`` items ahead, so decoding
    and resizing (OpenCV and PIL release the GIL) overlap with the GPU work of the consumer. Order and
    values are unchanged; an exception in the producer is re-raised in the consumer."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            put(err)

    thread = threading.Thread(target=produce, daemon=True, name="frame-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def host_to_device(x: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Move a CPU array/tensor to ``device``. On CUDA the batch is staged in pinned (page-locked) memory
    and copied with ``non_blocking=True``, so the host-to-device copy overlaps with the decoding thread
    (:func:`prefetch`) instead of stalling on a pageable copy; values are unchanged. torch is imported
    here, not at module level, because the media stage uses this module without torch."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if torch.device(device).type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
