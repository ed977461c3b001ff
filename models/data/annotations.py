"""Annotations of any dataset in one shape (:class:`VideoAnnotation` of :class:`Segment` s in seconds) and the
class order every model, checkpoint and evaluator uses (:func:`label_ids`, :func:`class_list`). The readers
of each dataset's files live beside this module (``unav``, ``activitynet``, ``llp``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


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
