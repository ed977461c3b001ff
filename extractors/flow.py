"""Optical flow for the I3D flow stream: frames -> RAFT (or Farneback) pairs -> the quantised flow windows I3D reads.

The steps, each in its own module: frames come from the one frame source (:func:`extractors.frames.iter_frames`,
resized as the reference) in the windows of :func:`extractors.frames.window_groups` (``span = stack + 1``); the
flow between consecutive frames is RAFT on Sintel-padded frames (:mod:`extractors.raft`) or, for the CPU demo,
Farneback; each field is centre-cropped to ``crop`` (offsets of the *padded* field, as the reference),
clamped to +-20 and quantised to ``round(128 + 255/40 x)`` (:func:`crop_quantize`); the quantised pairs either go
straight to I3D (:func:`extractors.i3d.extract_i3d`) or to an on-disk flow store (:func:`compute_flow`,
:mod:`extractors.flow_store`) that I3D reads later. Window ``t`` uses pairs ``(j, j+1)`` for
``j in [t * step, t * step + stack)``.

The reference recomputes RAFT for every window (pairs shared by overlapping windows are computed
``stack/step`` times); :class:`FlowSource` computes each pair once and keeps it until the last window using it
has run, which changes no value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extractors.flow_store import FlowStoreWriter, quantize_flow
from extractors.frames import center_offsets, check_stack_step, iter_frames, prefetch, window_groups


def crop_quantize(flow: torch.Tensor, crop: int) -> torch.Tensor:
    """Padded flow ``(n, 2, Hp, Wp)`` → centre crop → clamp → ``round(128 + 255/40 x)`` int16 0..256."""
    y, x = center_offsets(flow.shape[-2], flow.shape[-1], crop)
    return quantize_flow(flow[..., y:y + crop, x:x + crop])


def flow_windows(mp4_path: Path | str, recipe: Any, group: int) -> Iterator[tuple[list[int], int, np.ndarray]]:
    """I3D's windows of one video: ``(ts, base, frames)`` groups of up to ``group`` windows of ``stack + 1``
    frames every ``step`` (the frame after a window is needed for its last flow pair), decoded in a background
    thread. ``frames`` covers ``[base, ts[-1] * step + stack + 1)``."""
    check_stack_step(recipe.stack, recipe.step)
    frames = prefetch(iter_frames(mp4_path, recipe.short_side))
    for ts, base, buf in window_groups(frames, recipe.stack + 1, recipe.step, group):
        yield ts, base, np.stack(buf)


class FlowSource:
    """Quantized flow pairs by absolute index, computed from frames (RAFT/Farneback) or read from a store,
    each pair computed once and kept until no later window needs it."""

    def __init__(self, recipe: Any, flow_model: Any | None, device: str | torch.device, raft_batch: int,
                 stored: Iterator[np.ndarray] | None, dtype: torch.dtype) -> None:
        self.recipe, self.model, self.device = recipe, flow_model, device
        self.raft_batch, self.stored, self.dtype = raft_batch, stored, dtype
        self.cache: dict[int, torch.Tensor] = {}

    def needed(self, ts: list[int]) -> list[int]:
        r = self.recipe
        return sorted({j for t in ts for j in range(t * r.step, t * r.step + r.stack)})

    def fill(self, ts: list[int], base: int, frames: np.ndarray) -> list[int]:
        """Make pairs of windows ``ts`` available; returns the newly produced pair indices in order."""
        new = [j for j in self.needed(ts) if j not in self.cache]
        if self.stored is not None:
            for j in new:
                try:
                    self.cache[j] = torch.from_numpy(next(self.stored))
                except StopIteration as err:
                    raise ValueError(f"flow store ended before pair {j}: it does not match this video") from err
            return new
        from extractors.raft import farneback_pairs, raft_pairs

        runs: list[list[int]] = []
        for j in new:
            if runs and runs[-1][-1] == j - 1:
                runs[-1].append(j)
            else:
                runs.append([j])
        for run in runs:
            seg = frames[run[0] - base: run[-1] + 2 - base]
            if self.recipe.flow == "farneback":
                flow = farneback_pairs(seg)
            else:
                flow = raft_pairs(self.model, seg, self.device, self.raft_batch, self.dtype)
            q = crop_quantize(flow, self.recipe.crop).cpu()
            for k, j in enumerate(run):
                self.cache[j] = q[k]
        return new

    def window(self, t: int) -> torch.Tensor:
        r = self.recipe
        return torch.stack([self.cache[j] for j in range(t * r.step, t * r.step + r.stack)])

    def release_before(self, j0: int) -> None:
        for j in [j for j in self.cache if j < j0]:
            del self.cache[j]


def flow_model(recipe: Any, weights_root: Path, device: str | torch.device) -> tuple[Any, dict[str, Any]]:
    """The recipe's flow network (RAFT with registry weights) and its provenance; None for Farneback."""
    if recipe.flow == "farneback":
        return None, {"flow": "farneback", "weights": "none (classical flow, demo recipe: not the reference)"}
    if recipe.flow != "raft":
        raise ValueError(f"unknown flow method {recipe.flow!r}")
    from extractors.raft import build_raft

    model, prov = build_raft(recipe, weights_root, device)
    return model, {"flow": "raft", "raft_iters": recipe.raft_iters, **prov}


def store_meta(recipe: Any) -> dict[str, Any]:
    """The recipe numbers a flow store records: I3D refuses a store whose numbers differ from its recipe's."""
    return {"stack": recipe.stack, "step": recipe.step, "crop": recipe.crop, "short_side": recipe.short_side,
            "flow": recipe.flow, "raft_iters": recipe.raft_iters, "raft_weights": recipe.raft_weights,
            "weights": recipe.weights, "seed": recipe.seed}


def compute_flow(mp4_path: Path, recipe: Any, out_path: Path, device: str | torch.device = "cpu",
                 batch_size: int = 8, weights_root: Path = Path("resources/weights"),
                 dtype: torch.dtype = torch.float32, flow_net: Any | None = None) -> dict[str, Any]:
    """Compute the quantized, cropped flow the I3D flow stream needs and write it to ``out_path`` (flow
    store, ``extractors.flow_store``), streaming. Returns provenance. ``flow_net``: a prebuilt
    :class:`extractors.raft.RAFTFlow` (tests/benchmarks) instead of the registry weights."""
    t0 = time.time()
    if flow_net is not None:
        model, prov = flow_net, {"flow": recipe.flow, "weights": "injected"}
    else:
        model, prov = flow_model(recipe, weights_root, device)
    src = FlowSource(recipe, model, device, batch_size, None, dtype)
    n_windows = 0
    with FlowStoreWriter(out_path, meta={**store_meta(recipe), "provenance": prov}) as writer, torch.no_grad():
        for ts, base, fr in flow_windows(mp4_path, recipe, batch_size):
            new = src.fill(ts, base, fr)
            if new:
                writer.append(torch.stack([src.cache[j] for j in new]))
            n_windows += len(ts)
            src.release_before((ts[-1] + 1) * recipe.step)
        n_pairs = writer.n_pairs
    return {**prov, "n_windows": n_windows, "n_pairs": n_pairs, "bytes": Path(out_path).stat().st_size,
            "seconds": time.time() - t0, "dtype": str(dtype).replace("torch.", ""),
            "recipe_fingerprint": recipe.fingerprint()}
