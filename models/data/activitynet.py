"""ActivityNet 1.3's annotation file, read into the shape of :mod:`models.data.annotations`."""

from __future__ import annotations

import os

from models.data.annotations import VideoAnnotation
from models.data.unav import read_unav


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
