"""One video's feature files: where they are (this pipeline's layout or the UnAV-100 release's), loading
them cut to a common length, and which videos have all of them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

FEATURE_LAYOUTS = ("ours", "unav_release")


def feature_paths(
    vid: str, root: str | os.PathLike[str], layout: str = "ours", visual: str = "i3d",
    audio: str = "vggish", prefix: str = "",
) -> list[Path]:
    """The files one video's features are read from (the order :func:`load_video_features` reads them).

    ``layout='ours'``: ``root/features/{visual}/<vid>.npy`` and ``root/features/{audio}/<vid>.npy``
    (``root`` = ``results/<dataset>`` of this or another run). ``layout='unav_release'``: the public
    UnAV-100 folder, flat: ``<vid>_rgb.npy``, ``<vid>_flow.npy``, ``<vid>_vggish.npy``. ``prefix`` is
    prepended to the file names (e.g. ``v_`` for ActivityNet feature releases). The workflow checks
    these paths to list annotated videos without features.
    """
    root = Path(root)
    name = prefix + vid
    if layout == "ours":
        return [root / "features" / visual / f"{name}.npy", root / "features" / audio / f"{name}.npy"]
    if layout == "unav_release":
        return [root / f"{name}_{kind}.npy" for kind in ("rgb", "flow", "vggish")]
    raise ValueError(f"unknown feature layout {layout!r}; expected one of {FEATURE_LAYOUTS}")


def load_video_features(
    vid: str, root: str | os.PathLike[str], layout: str = "ours", visual: str = "i3d",
    audio: str = "vggish", prefix: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Load one video's (audio (T, Da), visual (T, Dv)) float32 features cut to the common T.

    Files as :func:`feature_paths`. For ``unav_release``, as ttgeng233/UnAV's loader
    (``libs/datasets/unav100.py``) does, I3D float64 is cast to float32 and RGB|flow concatenated
    (2048), then audio and visual are cut to the shorter length (the tail is dropped; index t means
    the same time in both).
    """
    paths = feature_paths(vid, root, layout, visual, audio, prefix)
    if layout == "ours":
        v = np.load(paths[0]).astype(np.float32, copy=False)
        a = np.load(paths[1]).astype(np.float32, copy=False)
    else:
        rgb = np.load(paths[0]).astype(np.float32)
        flow = np.load(paths[1]).astype(np.float32)
        n = min(len(rgb), len(flow))
        v = np.concatenate([rgb[:n], flow[:n]], axis=1)
        a = np.load(paths[2]).astype(np.float32)
    if a.ndim != 2 or v.ndim != 2:
        raise ValueError(f"{vid}: expected 2-D features, got audio {a.shape} visual {v.shape}")
    t = min(len(a), len(v))
    return np.ascontiguousarray(a[:t]), np.ascontiguousarray(v[:t])


def find_features(
    video_ids: Iterable[str], root: str | os.PathLike[str], layout: str = "ours", visual: str = "i3d",
    audio: str = "vggish", prefix: str = "",
) -> tuple[list[str], dict[str, str]]:
    """(ids with every feature file, {id: reason} for the others) under ``root``.

    Lists each folder once (a release has ~32k files; one ``stat`` per file would cost seconds on a
    network file system) instead of probing file by file.
    """
    listed: dict[Path, set[str]] = {}

    def exists(p: Path) -> bool:
        if p.parent not in listed:
            listed[p.parent] = set(os.listdir(p.parent)) if p.parent.is_dir() else set()
        return p.name in listed[p.parent]

    found, missing = [], {}
    for vid in video_ids:
        absent = [p for p in feature_paths(vid, root, layout, visual, audio, prefix) if not exists(p)]
        if absent:
            missing[vid] = "no feature file " + ", ".join(str(p) for p in absent)
        else:
            found.append(vid)
    return found, missing
