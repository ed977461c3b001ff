"""Seconds <-> feature steps, the time convention of every model and of ``models.localizers.postprocess``.

Feature ``t`` covers the window ``[t*step_s, t*step_s + window_s)``; its time stamp is the window
centre ``recipe.step_time(t) = center_offset_s + t*step_s`` (0.48 + 0.32 t s for UnAV-100), exactly
the mapping of the public UnAV-100 loader (ttgeng233/UnAV ``libs/datasets/unav100.py`` converts a
segment with ``(seconds*fps - 0.5*num_frames) / feat_stride``).

Segments in a batch use that continuous coordinate: ``x = (seconds - center_offset_s) / step_s``, so
integer ``x`` is the centre of feature ``x`` (values slightly below 0 are normal, as in the reference).
A feature ``t`` belongs to a segment ``[start_step, end_step]`` iff its centre lies inside it:
``start_step <= t <= end_step`` (see :func:`covered_steps`). Each feature owns the cell
``[t - 0.5, t + 0.5)``; a run of whole steps ``a..b`` is therefore the segment ``[a - 0.5, b + 0.5)``
(end exclusive in the cell sense), which is what ``models.localizers.postprocess`` emits for weak models.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from extractors.recipes import Recipe


def seconds_to_steps(start_s: float, end_s: float, recipe: Recipe) -> tuple[float, float]:
    """Continuous step coordinates of a segment (see module docstring)."""
    c, st = recipe.center_offset_s, recipe.step_s
    return (start_s - c) / st, (end_s - c) / st


def covered_steps(start_step: float, end_step: float, t_len: int) -> tuple[int, int]:
    """Integer steps whose centre lies inside ``[start_step, end_step]``, as a half-open range
    ``[a, b)`` clipped to ``[0, t_len)`` (empty when ``a >= b``)."""
    eps = 1e-6
    a = max(0, math.ceil(start_step - eps))
    b = min(t_len, math.floor(end_step + eps) + 1)
    return a, b


def render_segments(segments: np.ndarray | torch.Tensor, t_len: int, num_classes: int) -> np.ndarray:
    """Dense (T, C) 0/1 targets from ``(N, 3)`` ``[start_step, end_step, class]`` rows (centre rule)."""
    segs = np.asarray(segments, dtype=np.float64).reshape(-1, 3)
    out = np.zeros((t_len, num_classes), dtype=np.float32)
    for s, e, c in segs:
        a, b = covered_steps(float(s), float(e), t_len)
        if a < b:
            out[a:b, int(c)] = 1.0
    return out
