"""Annotations, feature loading, the memory-mapped feature store and the training dataset.

Time <-> feature-step convention (used by every model and by ``models.localizers.postprocess``)
------------------------------------------------------------------------------------
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

Feature store
-------------
All videos of a split live in two flat float16 files (``audio.f16`` (N_total, Da),
``visual.f16`` (N_total, Dv)) plus ``index.json`` (video ids, offsets, lengths, dims). Building
streams one video at a time (append to the files; never the whole split in RAM) inside a temporary
directory that is renamed into place at the end. ``FeatureStore.get`` returns read-only memory-mapped
views; ``FeatureStore.read`` (used by the dataset) returns copies read with ``pread`` so that an
epoch over the 10.5 GB UnAV-100 store is served from the shared page cache without the touched
pages being charged to the training process's RSS (bench/data_bench.py measures it).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from extractors.io import write_text
from extractors.recipes import Recipe

# ----------------------------------------------------------------------------------------------
# Annotations


@dataclass
class Segment:
    start: float
    end: float
    label: str
    label_id: int | None = field(default=None, compare=False)  # the annotation file's id, if it has one


@dataclass
class VideoAnnotation:
    video_id: str
    subset: str
    duration: float
    segments: list[Segment] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Sorted unique labels of the video (the weak, video-level label set)."""
        return sorted({s.label for s in self.segments})


def _read_database(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``database`` of an annotation JSON, plain or gzipped (``.gz``)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    if "database" not in data:
        raise ValueError(f"{path}: not an ActivityNet/UnAV-style annotation file (no 'database' key)")
    return data["database"]


# ActivityNet 1.3 names its subsets ``training`` / ``validation`` / ``testing``; everything downstream (the
# splits of ``models.run.pipeline.load_splits``, the workflow) uses UnAV-100's ``train`` / ``validation`` / ``test``.
SUBSET_ALIASES = {"training": "train", "testing": "test", "val": "validation"}


def _subset(name: Any) -> str:
    s = str(name or "").lower()
    return SUBSET_ALIASES.get(s, s)


def read_unav(path: str | os.PathLike[str]) -> dict[str, VideoAnnotation]:
    """Read the UnAV-100 annotation JSON (``{"database": {vid: {"subset", "duration",
    "annotations": [{"segment": [s, e], "label", "label_id"}]}}}``).

    ``label_id`` is kept on each :class:`Segment`: it decides the class order (:func:`label_ids`,
    :func:`class_list`) and the ids written for the reference evaluator (``models.run.interchange``).
    A file whose ``label_id`` disagrees with its labels (one name with two ids, one id for two names)
    is rejected here, naming the pair, rather than training on a silently merged class. Subset names
    are mapped to ``train`` / ``validation`` / ``test`` (:data:`SUBSET_ALIASES`).
    """
    out: dict[str, VideoAnnotation] = {}
    for vid, v in _read_database(path).items():
        segs = [Segment(float(a["segment"][0]), float(a["segment"][1]), str(a["label"]),
                        int(a["label_id"]) if a.get("label_id") is not None else None)
                for a in v.get("annotations", [])]
        out[vid] = VideoAnnotation(str(vid), _subset(v.get("subset")), float(v.get("duration", 0.0)), segs)
    try:
        label_ids(out)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return out


def read_activitynet(path: str | os.PathLike[str]) -> dict[str, VideoAnnotation]:
    """Read ActivityNet 1.3 (``activity_net.v1-3.min.json``: ``{"version", "taxonomy", "database":
    {vid: {"subset", "duration", "annotations": [{"segment", "label"}], "url", "resolution"}}}``).

    Subsets ``training`` / ``validation`` / ``testing`` become ``train`` / ``validation`` / ``test``.
    The file has no ``label_id``, so classes are ordered by name (:func:`class_list`). The database keys
    are YouTube ids *without* the ``v_`` prefix that many feature releases put on file names
    (``v_<id>.npy``); we keep the JSON ids (the official evaluator does too) and the feature loader adds
    a prefix if needed. Test-subset videos have no annotations.
    """
    return read_unav(path)


def read_llp(
    weak_csv: str | os.PathLike[str],
    audio_eval_csv: str | os.PathLike[str] | None = None,
    visual_eval_csv: str | os.PathLike[str] | None = None,
    subset: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Read the LLP (AVVP) CSVs of YapengTian/AVVP-ECCV20 ``data/``.

    Formats (verified on the public files): ``AVVP_train.csv`` / ``AVVP_val_pd.csv`` /
    ``AVVP_test_pd.csv`` are tab-separated with header ``filename\\tevent_labels`` and
    comma-separated labels; ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv`` are tab-separated
    with header ``filename\\tonset\\toffset\\tevent_labels``, one row per event, integer seconds,
    the event covering 1-s segments ``onset .. offset-1`` (HAN fills ``GT[c, onset:offset] = 1``;
    rows with ``onset >= offset`` therefore mark nothing -- the real eval CSVs have six such audio rows,
    one of them ``9 -> 0`` -- and duplicate rows are harmless). The rows are kept as read (no
    reordering of onset/offset) so that :func:`llp_segment_matrix` reproduces HAN's matrix exactly.

    Returns ``{vid: {"labels": [str], "subset": str, "audio": [Segment], "visual": [Segment]}}``
    for the videos of ``weak_csv``; eval rows of other videos (the real CSVs hold rows of eight files
    that are in no split) are ignored.
    """
    out: dict[str, dict[str, Any]] = {}
    sub = subset if subset is not None else Path(weak_csv).stem
    for row in _read_tsv(weak_csv):
        labels = [x.strip() for x in row["event_labels"].split(",") if x.strip()]
        out[row["filename"]] = {"labels": labels, "subset": sub, "audio": [], "visual": []}
    for key, p in (("audio", audio_eval_csv), ("visual", visual_eval_csv)):
        if p is None:
            continue
        for row in _read_tsv(p):
            vid = row["filename"]
            if vid in out:
                out[vid][key].append(Segment(float(row["onset"]), float(row["offset"]),
                                             row["event_labels"].strip()))
    return out


def unav_to_llp_csvs(annotations: dict[str, VideoAnnotation], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """An LLP view of UnAV-format (dense AV) annotations, as LLP's five CSVs (the formats of
    :func:`read_llp`): ``test`` videos -> ``AVVP_test_pd.csv``, ``validation`` videos ->
    ``AVVP_val_pd.csv`` (both with eval rows, as LLP's validation and test splits have), the others ->
    ``AVVP_train.csv``. UnAV events are audio-visual, so each gives the same audio and visual eval row,
    ``onset = floor(start)``, ``offset = ceil(end)`` (HAN's segments ``onset .. offset-1``)."""
    out = Path(out_dir)
    bad = sorted({sg.label for a in annotations.values() for sg in a.segments if {",", "\t", "\n"} & set(sg.label)})
    if bad:  # LLP's CSVs separate labels with commas and columns with tabs
        raise ValueError(f"labels {bad} contain a comma, tab or newline and cannot be written as LLP CSVs")
    split = {"train": [v for v, a in annotations.items() if a.subset not in ("test", "validation")],
             "val": [v for v, a in annotations.items() if a.subset == "validation"],
             "test": [v for v, a in annotations.items() if a.subset == "test"]}

    def weak(vids: list[str]) -> str:
        return "filename\tevent_labels\n" + "".join(
            f"{v}\t{','.join(sorted({sg.label for sg in annotations[v].segments}))}\n" for v in vids)

    rows = "".join(f"{v}\t{math.floor(sg.start)}\t{math.ceil(sg.end)}\t{sg.label}\n"
                   for v in split["val"] + split["test"] for sg in annotations[v].segments)
    texts = {"AVVP_train.csv": weak(split["train"]), "AVVP_val_pd.csv": weak(split["val"]),
             "AVVP_test_pd.csv": weak(split["test"])}
    for mod in ("audio", "visual"):
        texts[f"AVVP_eval_{mod}.csv"] = "filename\tonset\toffset\tevent_labels\n" + rows
    paths = {}
    for name, text in texts.items():
        write_text(out / name, text)
        paths[name] = out / name
    return paths


def _read_tsv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return rows


def llp_segment_matrix(segments: Sequence[Segment], classes: Sequence[str], t_len: int = 10) -> np.ndarray:
    """(C, t_len) binary matrix of 1-s segments, HAN's ``GT[c, onset:offset] = 1``."""
    idx = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), t_len), dtype=np.float32)
    for s in segments:
        m[idx[s.label], int(s.start):int(s.end)] = 1.0
    return m


def label_ids(annotations: dict[str, VideoAnnotation] | Iterable[VideoAnnotation]) -> dict[str, int]:
    """``{label: class index}``: the annotation file's ``label_id`` when its segments carry one (UnAV-100:
    ids 0..99, which the reference code uses as class indices), else the index in the sorted names
    (ActivityNet, LLP, the synthetic benchmark). Raises on a name with two ids, an id shared by two names,
    or a file where only some segments have an id."""
    anns = annotations.values() if isinstance(annotations, dict) else annotations
    by_name: dict[str, int | None] = {}
    where: dict[str, str] = {}
    for a in anns:
        for s in a.segments:
            if s.label in by_name and by_name[s.label] != s.label_id:
                raise ValueError(f"label {s.label!r} has label_id {by_name[s.label]} in video {where[s.label]!r} "
                                 f"but {s.label_id} in video {a.video_id!r}")
            by_name.setdefault(s.label, s.label_id)
            where.setdefault(s.label, a.video_id)
    with_id = {n: i for n, i in by_name.items() if i is not None}
    if not with_id:
        return {n: i for i, n in enumerate(sorted(by_name))}
    if len(with_id) != len(by_name):
        raise ValueError(f"labels {sorted(set(by_name) - set(with_id))[:5]} have no label_id while others do")
    names_of: dict[int, str] = {}
    for n, i in with_id.items():
        if i in names_of:
            raise ValueError(f"label_id {i} names two labels: {names_of[i]!r} and {n!r}")
        names_of[i] = n
    return with_id


def class_list(annotations: dict[str, VideoAnnotation] | Iterable[VideoAnnotation]) -> list[str]:
    """The class index order used everywhere: labels ordered by :func:`label_ids`.

    With ``label_id`` in the file, class ``i`` is the label with the ``i``-th smallest id, so on the full
    UnAV-100 file (ids 0..99, contiguous, checked) index == ``label_id``. A slice of that file lacks some
    ids; its classes keep the id order but are numbered compactly, and anything that must speak the
    file's ids (the reference evaluator's input, ``models.run.interchange``) maps names through
    :func:`label_ids`, never through the index. Checkpoints store this list, so a model always decodes
    with the order it was trained with.
    """
    ids = label_ids(annotations)
    return sorted(ids, key=ids.__getitem__)


def write_unav(annotations: dict[str, VideoAnnotation], path: str | os.PathLike[str],
               classes: Sequence[str] | None = None) -> None:
    """Write annotations as UnAV-100 JSON. ``label_id``: the index in ``classes`` when given, else the
    ids of :func:`label_ids` (the file's own ids survive a read/write round trip)."""
    cidx = {c: i for i, c in enumerate(classes)} if classes is not None else label_ids(annotations)
    db = {}
    for vid, a in annotations.items():
        db[vid] = {
            "subset": a.subset, "duration": float(a.duration),
            "annotations": [{"segment": [float(s.start), float(s.end)], "label": s.label,
                             "label_id": cidx[s.label]} for s in a.segments],
        }
    write_text(path, json.dumps({"database": db}, indent=1))


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


# ----------------------------------------------------------------------------------------------
# Per-video features


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


# ----------------------------------------------------------------------------------------------
# Feature store


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


# ----------------------------------------------------------------------------------------------
# Dataset


class FeatureDataset(Dataset):
    """Fixed-length items for training/evaluation, padded or clipped to ``t_max``.

    Long videos are clipped to their first ``t_max`` steps (CLASP: "clipping or zero-padding"),
    short ones zero-padded with ``mask`` False on the padding. Segments are given in continuous
    step units (module docstring); after clipping, segments whose covered steps all fall beyond
    ``t_max`` are dropped (those not overlapping the kept cells ``[-0.5, t_max - 0.5)``) and ends are clamped to ``t_max - 0.5`` (the last kept cell's edge).
    ``labels`` is the video-level multi-hot of the full annotation, unless ``clip_labels`` is
    True, in which case it counts only classes with a segment inside the clipped window.
    Videos of the subset that are missing from the store raise, rather than silently vanish; annotated
    videos known to have no features are passed as ``without_features`` instead (kept, not loaded):
    evaluation counts their ground truth as missed, as the reference evaluator does.

    ``crop_ratio=(lo, hi)`` (training only; :func:`models.run.train.with_crop` sets it): each read takes a
    random window, UnAV/ActionFormer's ``truncate_feats`` (ttgeng233/UnAV ``libs/datasets/data_utils.py``):
    a video of ``n <= t_max`` steps keeps a random ``randint(round(lo n), round(hi n))``-step window, a
    longer one a random ``t_max``-step window; a segment survives when more than ``trunc_thresh`` of
    its length is inside (clipped to the window's cells), the draw is repeated (up to 20 times) until
    one survives when the video has any, and ``labels`` are then the surviving segments' classes.
    Draws use NumPy's global RNG, which :mod:`models.run.train` seeds and checkpoints.
    """

    def __init__(
        self, store: FeatureStore, annotations: dict[str, VideoAnnotation], classes: list[str],
        recipe: Recipe, subset: str | None = None, t_max: int | None = None, clip_labels: bool = False,
        without_features: dict[str, VideoAnnotation] | None = None,
    ):
        self.without_features = {v: a for v, a in (without_features or {}).items()
                                 if subset is None or a.subset == subset}
        self.store = store
        self.classes = list(classes)
        self.cidx = {c: i for i, c in enumerate(self.classes)}
        self.recipe = recipe
        self.t_max = int(t_max if t_max is not None else recipe.t_max)
        self.clip_labels = clip_labels
        self.crop_ratio: tuple[float, float] | None = None
        self.trunc_thresh = 0.5
        ids = [v for v, a in annotations.items() if subset is None or a.subset == subset]
        missing = [v for v in ids if v not in store]
        if missing:
            raise KeyError(f"{len(missing)} video(s) of subset {subset!r} are missing from the feature "
                           f"store {store.root}: {missing[:5]}")
        self.video_ids = ids
        self.annotations = {v: annotations[v] for v in ids}

    def __len__(self) -> int:
        return len(self.video_ids)

    def segments_in_steps(self, vid: str) -> np.ndarray:
        """(N, 3) float32 ``[start_step, end_step, class]`` of the full (unclipped) video."""
        rows = []
        for s in self.annotations[vid].segments:
            a, b = seconds_to_steps(s.start, s.end, self.recipe)
            rows.append((a, b, self.cidx[s.label]))
        return np.asarray(rows, dtype=np.float32).reshape(-1, 3)

    def _random_window(self, n: int, segs: np.ndarray) -> tuple[int, int, np.ndarray]:
        """(start, length, surviving segments shifted to the window) of a random crop (class docstring)."""
        lo, hi = self.crop_ratio  # type: ignore[misc]
        for _ in range(20):
            if n <= self.t_max:
                length = int(np.random.randint(max(1, round(lo * n)), max(1, min(round(hi * n), n)) + 1))
            else:
                length = self.t_max
            st = int(np.random.randint(0, n - length + 1))
            if not len(segs):
                return st, length, segs
            s = segs.copy()
            s[:, :2] -= st
            a, b = np.maximum(s[:, 0], -0.5), np.minimum(s[:, 1], length - 0.5)
            keep = (b - a) > self.trunc_thresh * (s[:, 1] - s[:, 0])
            if keep.any():
                s[:, 0], s[:, 1] = a, b
                return st, length, s[keep]
        return st, length, s[keep]

    def __getitem__(self, i: int) -> dict[str, Any]:
        vid = self.video_ids[i]
        a16, v16 = self.store.read(vid)
        segs = self.segments_in_steps(vid)
        cropped = self.crop_ratio is not None
        if cropped:
            st, t, segs = self._random_window(len(a16), segs)
        else:
            st, t = 0, min(len(a16), self.t_max)
        audio = np.zeros((self.t_max, self.store.audio_dim), np.float32)
        visual = np.zeros((self.t_max, self.store.visual_dim), np.float32)
        audio[:t] = a16[st:st + t]
        visual[:t] = v16[st:st + t]
        mask = np.zeros(self.t_max, dtype=bool)
        mask[:t] = True
        if len(segs) and not cropped:
            # keep segments overlapping the kept cells [-0.5, t_max - 0.5)
            segs = segs[(segs[:, 0] < self.t_max - 0.5) & (segs[:, 1] > -0.5)]
            segs[:, 1] = np.minimum(segs[:, 1], self.t_max - 0.5)
        labels = np.zeros(len(self.classes), np.float32)
        if self.clip_labels or cropped:
            labels[segs[:, 2].astype(np.int64)] = 1.0
        else:
            for s in self.annotations[vid].segments:
                labels[self.cidx[s.label]] = 1.0
        return {
            "audio": torch.from_numpy(audio), "visual": torch.from_numpy(visual),
            "mask": torch.from_numpy(mask), "labels": torch.from_numpy(labels),
            "segments": torch.from_numpy(segs), "video_id": vid,
            "duration": float(self.annotations[vid].duration), "length": int(len(a16)),
        }


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dict of ``models/localizers/base.py`` (plus ``lengths``: true unclipped T per video).

    Stacks with NumPy: on this CPU build ``torch.stack`` of 16 x (224, 2048) float32 took ~0.6 s
    with 2 threads against a few ms for ``np.stack`` (bench/data_bench.py).
    """

    def stack(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(it[key]) for it in items]))

    return {
        "audio": stack("audio"),
        "visual": stack("visual"),
        "mask": stack("mask"),
        "labels": stack("labels"),
        "segments": [it["segments"] for it in items],
        "video_ids": [it["video_id"] for it in items],
        "durations": torch.tensor([it["duration"] for it in items], dtype=torch.float32),
        "lengths": torch.tensor([it["length"] for it in items], dtype=torch.int64),
    }


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """Deterministic DataLoader (seeded shuffling and worker seeds) with :func:`collate`."""
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      collate_fn=collate, generator=g, worker_init_fn=_seed_worker,
                      drop_last=drop_last, persistent_workers=False)
