"""Frame path of the I3D/RAFT recipe: resize convention, colour order, window arithmetic, streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_lossless_clip
from PIL import Image

from extractors.frames import (
    count_frames,
    iter_frames,
    iter_windows,
    num_pairs_needed,
    num_windows,
    resize_frame,
    resized_size,
)


@pytest.mark.parametrize(("w", "h", "expected"), [
    (320, 240, (341, 256)),   # int(256 * 320 / 240) = 341.33 -> 341 (truncated)
    (240, 320, (256, 341)),
    (176, 144, (312, 256)),   # 312.88 -> 312
    (456, 256, (456, 256)),   # short side already 256: untouched
    (256, 256, (256, 256)),
    (1280, 720, (455, 256)),  # 455.11 -> 455
])
def test_resized_size_truncates_long_side(w: int, h: int, expected: tuple[int, int]) -> None:
    assert resized_size(w, h, 256) == expected


def test_resize_is_pil_bilinear_antialiased() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    out = resize_frame(img, 256)
    ref = np.asarray(Image.fromarray(img).resize((341, 256), Image.BILINEAR))
    assert out.dtype == np.uint8 and out.shape == (256, 341, 3)
    assert np.array_equal(out, ref)
    # antialiased: a 2x down-scale of a 1-px checkerboard is flat grey, point-sampled bilinear is not
    checker = (np.indices((512, 600)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, -1)
    small = resize_frame(checker, 256)
    assert small.std() < 3.0
    same = np.zeros((256, 300, 3), np.uint8)
    assert resize_frame(same, 256) is same


def test_iter_frames_rgb_order_and_count(tmp_path: Path) -> None:
    frames = np.zeros((7, 128, 160, 3), np.uint8)
    frames[..., 0] = 200  # red
    frames[:, :, :, 2] = np.arange(7, dtype=np.uint8)[:, None, None] * 10  # blue encodes the frame index
    clip = write_lossless_clip(tmp_path / "red clip ü.mkv", frames)
    got = list(iter_frames(clip, short_side=None))
    assert len(got) == 7 == count_frames(clip)
    assert np.array_equal(np.stack(got), frames)
    resized = list(iter_frames(clip, short_side=256))
    assert resized[0].shape == (256, 320, 3)
    assert abs(int(resized[3][100, 100, 2]) - 30) <= 1 and resized[3][100, 100, 0] >= 198


def test_iter_frames_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot open"):
        list(iter_frames(tmp_path / "absent.mp4"))


@pytest.mark.parametrize(("n", "stack", "step"), [(40, 24, 8), (25, 24, 8), (24, 24, 8), (33, 24, 8),
                                                  (100, 24, 8), (50, 10, 4), (30, 5, 6), (12, 3, 3)])
def test_window_count_and_content(n: int, stack: int, step: int) -> None:
    frames = (np.full((1, 1, 3), i % 256, np.uint8) for i in range(n))
    wins = list(iter_windows(frames, stack, step))
    expected = max(0, (n - stack - 1) // step + 1) if n >= stack + 1 else 0
    assert len(wins) == expected == num_windows(n, stack, step)
    if stack == 24 and step == 8:
        assert len(wins) == (max(0, (n - 25) // 8 + 1) if n >= 25 else 0)
    for t, win in wins:
        assert win.shape[0] == stack + 1
        assert [int(v) for v in win[:, 0, 0, 0]] == [(t * step + k) % 256 for k in range(stack + 1)]
    assert [t for t, _ in wins] == list(range(expected))
    if expected:
        assert num_pairs_needed(expected, stack, step) == (expected - 1) * step + stack


def test_windows_stream_without_reading_ahead() -> None:
    consumed = []

    def gen():
        for i in range(1000):
            consumed.append(i)
            yield np.zeros((2, 2, 3), np.uint8)

    it = iter_windows(gen(), 24, 8)
    next(it)
    assert len(consumed) == 25  # a window needs stack + 1 frames and nothing more
    next(it)
    assert len(consumed) == 33


def test_prefetch_preserves_order_and_propagates_errors() -> None:
    from extractors.frames import prefetch

    assert list(prefetch(iter(range(200)), depth=3)) == list(range(200))

    def failing():
        yield 1
        raise ValueError("decode failed")

    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(ValueError, match="decode failed"):
        next(it)
    early = prefetch(iter(range(10_000)), depth=2)
    assert next(early) == 0
    early.close()  # must not hang on the blocked producer


def test_step_beyond_stack_plus_one_is_rejected() -> None:
    frames = (np.zeros((1, 1, 3), np.uint8) for _ in range(40))
    with pytest.raises(ValueError, match="not supported: the reference extractor would advance by stack"):
        list(iter_windows(frames, 5, 9))
