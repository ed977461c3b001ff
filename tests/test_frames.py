"""The one frame source and window builder: resize convention, colour order, window arithmetic per recipe,
streaming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_lossless_clip
from PIL import Image

from extractors.frames import (
    check_stack_step,
    count_frames,
    iter_frames,
    num_pairs_needed,
    num_windows,
    resize_frame,
    resized_size,
    window_groups,
)
from extractors.recipes import RECIPES


def i3d_windows(frames, stack: int, step: int):
    """I3D's windows one at a time: ``(t, (stack + 1, H, W, 3) frames)``."""
    check_stack_step(stack, step)
    for ts, _, buf in window_groups(frames, stack + 1, step):
        yield ts[0], np.stack(buf)


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
    wins = list(i3d_windows(frames, stack, step))
    expected = max(0, (n - stack - 1) // step + 1) if n >= stack + 1 else 0
    assert len(wins) == expected == num_windows(n, stack + 1, step)
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

    it = i3d_windows(gen(), 24, 8)
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
        list(i3d_windows(frames, 5, 9))


def _hand_windows(recipe_name: str, n: int) -> list[list[int]]:
    """Frame indices of each window, written out from each reference's own loop (not from window_groups)."""
    r = RECIPES[recipe_name]
    out = []
    if recipe_name == "llp":  # LLP: second k = frames [8k, 8k + 8), at most 10 seconds
        for k in range(min(10, n // 8)):
            out.append(list(range(8 * k, 8 * k + 8)))
    elif r.visual == "i3d":  # video_features extract_i3d: process when len(stack) - 1 == stack, then drop step
        buf: list[int] = []
        for i in range(n):
            buf.append(i)
            if len(buf) - 1 == r.stack:
                out.append(list(buf))
                buf = buf[r.step:]
    else:  # R(2+1)D: windows of stack frames starting every step frames
        start = 0
        while start + r.stack <= n:
            out.append(list(range(start, start + r.stack)))
            start += r.step
    return out


@pytest.mark.parametrize("name", ["demo", "unav100", "activitynet", "llp"])
@pytest.mark.parametrize("n", [0, 7, 8, 12, 13, 25, 33, 64, 81, 100])
def test_window_builder_gives_each_recipes_windows(name: str, n: int) -> None:
    """The one window builder, with each recipe's parameters, gives the windows each reference's loop gives."""
    r = RECIPES[name]
    span = 8 if name == "llp" else r.min_frames
    limit = 10 if name == "llp" else None
    want = _hand_windows(name, n)
    for group in (1, 3):
        got = [buf[t * r.step - base:][:span] for ts, base, buf in
               window_groups(iter(range(n)), span, r.step, group, max_windows=limit) for t in ts]
        assert got == want
    assert num_windows(n, span, r.step) == (n // 8 if name == "llp" else len(want))  # LLP caps at 10 afterwards


def test_window_builder_skips_frames_between_windows_unprepared() -> None:
    prepared: list[int] = []

    def prep(i: int) -> int:
        prepared.append(i)
        return 10 * i

    wins = [(ts, base, buf) for ts, base, buf in window_groups(iter(range(20)), 3, 7, prepare=prep)]
    assert [buf for _, _, buf in wins] == [[0, 10, 20], [70, 80, 90], [140, 150, 160]]
    assert prepared == [0, 1, 2, 7, 8, 9, 14, 15, 16]
    with pytest.raises(ValueError, match="span, step and group must be >= 1"):
        list(window_groups(iter(range(3)), 0, 1))
