"""The one frame source and the one window builder of every visual extractor (I3D, R(2+1)D, LLP's per-second
features): decode, resize, and cut into windows. The recipes differ only in parameters of :func:`iter_frames`
and :func:`window_groups`; what each reference does is kept as a named option.

I3D conventions verified in v-iashin/video_features (docs/recipes.md, "UnAV-100"; read
``models/i3d/extract_i3d.py`` @02fae36, ``models/transforms.py`` @34b927c), and replicated exactly here:

- ``models/i3d/extract_i3d.py``: frames are read in order with ``cv2.VideoCapture(...).read()`` from the
  re-encoded constant-FPS mp4, converted with ``cv2.cvtColor(BGR2RGB)``; if the *first* read fails it is
  skipped (a re-encode quirk: ``skip_failed_first``) and reading stops at the first later failure. The stack
  is processed when ``len(stack) - 1 == stack_size`` (a window of ``stack`` frames needs ``stack + 1``
  frames, because flow is computed between consecutive frames: ``span = stack + 1``), then
  ``stack = stack[step_size:]``; the incomplete last stack is never processed. (With ``step > stack + 1``
  that slicing would make the reference advance by ``stack + 1``, not ``step``: unsupported, see
  :func:`check_stack_step`.)
- ``models/transforms.py`` ``resize`` / ``ResizeImproved``: ``ToPILImage`` on the uint8 HWC array, then
  if the smaller side already equals ``size`` the image is returned untouched; otherwise the smaller side
  becomes ``size`` and the other ``int(size * long / short)`` (truncation), resized with
  ``PIL.Image.resize(..., Image.BILINEAR)`` — Pillow's BILINEAR resize is a convolution whose support
  widens with the down-scale factor, i.e. antialiased. ``PILToTensor`` + ``ToFloat`` then give float32
  values 0..255 (integer valued, since PIL returns uint8).

R(2+1)D (``extractors.r21d``) reads the same mp4 unresized and without the first-frame quirk, windows of
``stack`` frames; LLP (``extractors.llp.features``) reads the source video through ffmpeg's ``fps`` filter
and takes one window per second.

We keep frames as uint8 internally (their values are integers anyway: exact, and 4x less memory) and
convert to float32 at the network input. The streaming paths hold no more than one group of windows of a
video in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

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


def center_offsets(height: int, width: int, crop: int) -> tuple[int, int]:
    """Reference ``TensorCenterCrop`` offsets ``((H - crop) // 2, (W - crop) // 2)`` (I3D's RGB and flow)."""
    if height < crop or width < crop:
        raise ValueError(f"frame {height}x{width} is smaller than the {crop} centre crop")
    return (height - crop) // 2, (width - crop) // 2


def iter_frames(path: Path | str, short_side: int | None = 256, *, skip_failed_first: bool = True,
                fps: float | None = None, max_seconds: float | None = None) -> Iterator[np.ndarray]:
    """Yield uint8 ``(H, W, 3)`` RGB frames in decode order: the one frame source of every visual extractor.

    Two recipes, chosen by ``fps``:

    - ``fps=None`` (I3D, R(2+1)D): OpenCV reads the media stage's constant-FPS mp4 frame by frame (BGR ->
      RGB), as video_features does; ``short_side`` resizes as the reference (:func:`resize_frame`; None:
      unresized). ``skip_failed_first`` is the I3D reference's quirk (a failed *first* read is skipped, not an
      end of stream); video_features' R(2+1)D reads with PyAV and has no such quirk (``False``).
    - ``fps`` given (LLP's per-second features): ffmpeg's ``fps`` filter on the *source* video (imageio-ffmpeg,
      an argument list, no shell), at most ``max_seconds`` s (``-t``; the frames past ``round(fps *
      max_seconds)`` are decoded but not yielded). The file is probed first, so a file that is no usable
      video, or that ffmpeg cannot decode, raises :class:`~extractors.errors.ContentError` (a failed clip),
      as does a video that gives no frame; a missing ffmpeg or any other OS error propagates.
    """
    if fps is not None:
        if short_side is not None:
            raise ValueError("the ffmpeg fps path yields decoded frames unresized (short_side=None)")
        yield from _ffmpeg_frames(path, fps, max_seconds)
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"OpenCV cannot open video {str(path)!r}")
    try:
        first = skip_failed_first
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


def _ffmpeg_frames(path: Path | str, fps: float, max_seconds: float | None) -> Iterator[np.ndarray]:
    import imageio_ffmpeg

    from extractors.errors import ContentError
    from extractors.probe import probe

    probe(path)  # MediaError (a ContentError) names why a file is not usable video
    limit = [] if max_seconds is None else ["-t", str(max_seconds)]
    cap = None if max_seconds is None else int(round(fps * max_seconds))
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=["-vf", f"fps={fps}", *limit])
    n = 0
    try:
        w, h = next(gen)["size"]
        for buf in gen:  # read to the end even past `cap`, so a decode error there still fails the clip
            if cap is None or n < cap:
                n += 1
                yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    except (RuntimeError, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:  # an OS fault (no ffmpeg binary, ...), not the clip's
            raise
        raise ContentError(path, f"ffmpeg could not decode its frames: {str(err).strip().splitlines()[0]}") from err
    finally:
        gen.close()
    if n == 0:
        raise ContentError(path, "no frames decoded")


# ----------------------------------------------------------------------------- windows
# Every visual extractor cuts its frames into windows here. A window of ``span`` frames starts every ``step``
# frames; an incomplete tail is dropped. The recipes differ only in the numbers:
#   I3D        span = stack + 1 (flow needs the frame after the window), step <= stack + 1 (check_stack_step)
#   R(2+1)D    span = stack, any step (frames between windows are skipped, never prepared)
#   LLP        span = step = fps (one window per second), at most n_segments windows


def num_windows(n_frames: int, span: int, step: int) -> int:
    """Complete windows of ``span`` frames every ``step`` frames in ``n_frames``: ``floor((N - span) / step) + 1``
    (0 if ``N < span``). I3D: ``span = stack + 1``; R(2+1)D: ``span = stack`` (:attr:`Recipe.min_frames`)."""
    if n_frames < span:
        return 0
    return (n_frames - span) // step + 1


def num_pairs_needed(n_windows: int, stack: int, step: int) -> int:
    """Flow pairs ``(j, j+1)`` used by the first ``n_windows`` windows: ``(W-1)*step + stack``."""
    return 0 if n_windows == 0 else (n_windows - 1) * step + stack


def check_stack_step(stack: int, step: int) -> None:
    """I3D's reference option: only ``1 <= step <= stack + 1``. For a larger step the reference's
    ``stack = stack[step:]`` empties the buffer and the next window starts ``stack + 1`` frames later, not
    ``step`` frames later, which would break the ``t * step`` time mapping of the recipe."""
    if stack < 1 or step < 1:
        raise ValueError(f"stack and step must be >= 1, got stack={stack}, step={step}")
    if step > stack + 1:
        raise ValueError(f"step={step} > stack+1={stack + 1} is not supported: the reference extractor would "
                         f"advance by stack+1 frames, not by step")


T = TypeVar("T")


def window_groups(frames: Iterable[np.ndarray], span: int, step: int, group: int = 1,
                  prepare: Callable[[np.ndarray], T] | None = None,
                  max_windows: int | None = None) -> Iterator[tuple[list[int], int, list[T]]]:
    """Yield ``(ts, base, buf)``: up to ``group`` consecutive complete window indices ``ts`` and the frames
    ``buf = [base, ts[-1] * step + span)`` they cover (``base = ts[0] * step``; window ``t`` is
    ``buf[t * step - base:][:span]``), at most ``max_windows`` windows in all.

    ``prepare`` maps each frame once as it is read (R(2+1)D's per-frame transform); frames no window covers
    (``step > span``) are skipped without it. Frames are pulled only as far as the group needs, so memory is
    ``(group - 1) * step + span`` frames at most and a group is yielded as soon as its last frame is decoded;
    after the last complete window the source is read to its end (an incomplete tail is dropped)."""
    if span < 1 or step < 1 or group < 1:
        raise ValueError(f"span, step and group must be >= 1, got span={span}, step={step}, group={group}")
    it = iter(frames)
    buf: list = []
    base = 0  # absolute index of buf[0]
    pulled = 0  # frames taken from the source
    t = 0
    exhausted = False
    while max_windows is None or t < max_windows:
        ts: list[int] = []
        while len(ts) < group and (max_windows is None or t + len(ts) < max_windows):
            end = (t + len(ts)) * step + span  # frames needed (exclusive end)
            while not exhausted and base + len(buf) < end:
                try:
                    frame = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pulled += 1
                if pulled > base:  # frames before `base` lie between windows: skipped
                    buf.append(frame if prepare is None else prepare(frame))
            if base + len(buf) < end:
                break
            ts.append(t + len(ts))
        if not ts:
            return
        yield ts, base, buf[: ts[-1] * step + span - base]
        t = ts[-1] + 1
        drop = t * step - base
        buf = buf[drop:]
        base += drop


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
