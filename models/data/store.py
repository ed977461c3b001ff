"""The feature store: every video of a split in two memory-mapped float16 files.

All videos of a split live in two flat float16 files (``audio.f16`` (N_total, Da),
``visual.f16`` (N_total, Dv)) plus ``index.json`` (video ids, offsets, lengths, dims). Building
streams one video at a time (append to the files; never the whole split in RAM) inside a temporary
directory that is renamed into place at the end. ``FeatureStore.get`` returns read-only memory-mapped
views; ``FeatureStore.read`` (used by the dataset) returns copies read with ``pread`` so that an
epoch over the 10.5 GB UnAV-100 store is served from the shared page cache without the touched
pages being charged to the training process's RSS (bench/data_bench.py measures it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from extractors.io import write_text


class FeatureStore:
    """Read-only view of a split's features: two memory-mapped fp16 arrays plus an index."""

    INDEX = "index.json"
    AUDIO = "audio.f16"
    VISUAL = "visual.f16"
    FORMAT = "featurestore-v1"

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        with open(self.root / self.INDEX, encoding="utf-8") as fh:
            idx = json.load(fh)
        if idx.get("format") != self.FORMAT:
            raise ValueError(f"{self.root}: unknown feature store format {idx.get('format')!r}")
        self.video_ids: list[str] = list(idx["video_ids"])
        self.offsets = np.asarray(idx["offsets"], dtype=np.int64)
        self.lengths = np.asarray(idx["lengths"], dtype=np.int64)
        self.audio_dim = int(idx["audio_dim"])
        self.visual_dim = int(idx["visual_dim"])
        self.total = int(idx["total"])
        self.meta: dict[str, Any] = idx.get("meta", {})
        self._pos = {v: i for i, v in enumerate(self.video_ids)}
        self._audio: np.ndarray | None = None
        self._visual: np.ndarray | None = None
        self._fds: tuple[int, int, int] | None = None

    def _maps(self) -> tuple[np.ndarray, np.ndarray]:
        # Opened lazily (and re-opened in each DataLoader worker after pickling) so that forked
        # workers do not share file offsets and pickling never copies the data.
        if self._audio is None or self._visual is None:
            shape_a, shape_v = (self.total, self.audio_dim), (self.total, self.visual_dim)
            if self.total == 0:
                self._audio = np.zeros(shape_a, np.float16)
                self._visual = np.zeros(shape_v, np.float16)
            else:
                self._audio = np.memmap(self.root / self.AUDIO, np.float16, "r", shape=shape_a)
                self._visual = np.memmap(self.root / self.VISUAL, np.float16, "r", shape=shape_v)
        return self._audio, self._visual

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_audio"] = None
        state["_visual"] = None
        state["_fds"] = None
        return state

    def _files(self) -> tuple[int, int]:
        fds = getattr(self, "_fds", None)
        if fds is None or fds[0] != os.getpid():
            fds = (os.getpid(), os.open(self.root / self.AUDIO, os.O_RDONLY),
                   os.open(self.root / self.VISUAL, os.O_RDONLY))
            self._fds = fds
        return fds[1], fds[2]

    def read(self, vid: str) -> tuple[np.ndarray, np.ndarray]:
        """(audio, visual) float16 *copies* read with ``pread``.

        Unlike :meth:`get`, nothing stays mapped, so pages read for one batch are not charged
        to the process's RSS for the rest of the epoch (they live in the shared page cache); the
        dataset uses this to keep training under the 4 GiB RSS budget (docs/recipes.md, "Memory").
        """
        i = self._pos[vid]
        o, n = int(self.offsets[i]), int(self.lengths[i])
        out = []
        for fd, d in zip(self._files(), (self.audio_dim, self.visual_dim), strict=True):
            arr = np.empty((n, d), dtype=np.float16)
            nbytes = arr.nbytes
            buf = memoryview(arr.reshape(-1)).cast("B")
            done = 0
            while done < nbytes:
                got = os.preadv(fd, [buf[done:]], o * d * 2 + done)
                if got <= 0:
                    raise OSError(f"{self.root}: short read for {vid!r} ({done} of {nbytes} bytes)")
                done += got
            out.append(arr)
        return out[0], out[1]

    def close(self) -> None:
        """Close the pread file descriptors (memory maps are released with the object)."""
        fds = getattr(self, "_fds", None)
        if fds is not None and fds[0] == os.getpid():
            os.close(fds[1])
            os.close(fds[2])
        self._fds = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing useful to do
            pass

    def __len__(self) -> int:
        return len(self.video_ids)

    def __contains__(self, vid: object) -> bool:
        return vid in self._pos

    def length(self, vid: str) -> int:
        return int(self.lengths[self._pos[vid]])

    def get(self, vid: str) -> tuple[np.ndarray, np.ndarray]:
        """(audio (T, Da), visual (T, Dv)) float16 memory-mapped views (no copy)."""
        i = self._pos[vid]
        o, n = int(self.offsets[i]), int(self.lengths[i])
        a, v = self._maps()
        return a[o:o + n], v[o:o + n]

    @classmethod
    def build(
        cls, out_dir: str | os.PathLike[str], video_ids: Sequence[str],
        loader: Callable[[str], tuple[np.ndarray, np.ndarray]], meta: dict[str, Any] | None = None,
        overwrite: bool = True,
    ) -> FeatureStore:
        """Stream ``loader(vid) -> (audio, visual)`` for every id into a new store at ``out_dir``.

        Only one video is in memory at a time. The store is written into a temporary sibling
        directory and renamed into place, so a crash never leaves a half-written store behind.
        Audio/visual are cut to the shorter length (the same rule as the loaders).
        """
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if len(set(video_ids)) != len(video_ids):
            raise ValueError("duplicate video ids given to FeatureStore.build")
        if out_dir.exists() and not overwrite:
            raise FileExistsError(f"feature store {out_dir} exists")
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
        try:
            offsets, lengths = [], []
            da = dv = None
            total = 0
            with open(tmp / cls.AUDIO, "wb") as fa, open(tmp / cls.VISUAL, "wb") as fv:
                for vid in video_ids:
                    a, v = loader(vid)
                    a, v = np.asarray(a), np.asarray(v)
                    if a.ndim != 2 or v.ndim != 2:
                        raise ValueError(f"{vid}: expected 2-D features, got {a.shape} and {v.shape}")
                    if da is None:
                        da, dv = a.shape[1], v.shape[1]
                    if a.shape[1] != da or v.shape[1] != dv:
                        raise ValueError(f"{vid}: feature dims {a.shape[1]}/{v.shape[1]} differ from "
                                         f"the first video's {da}/{dv}")
                    t = min(len(a), len(v))
                    np.ascontiguousarray(a[:t], dtype=np.float16).tofile(fa)
                    np.ascontiguousarray(v[:t], dtype=np.float16).tofile(fv)
                    offsets.append(total)
                    lengths.append(t)
                    total += t
            index = {
                "format": cls.FORMAT, "video_ids": list(video_ids), "offsets": offsets,
                "lengths": lengths, "audio_dim": int(da or 0), "visual_dim": int(dv or 0),
                "total": total, "dtype": "float16", "meta": meta or {},
            }
            write_text(tmp / cls.INDEX, json.dumps(index))
            if out_dir.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
                os.replace(out_dir, old / "store")
                os.replace(tmp, out_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(out_dir)
