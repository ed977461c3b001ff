"""Helpers every run entry shares: device and AMP choice, seeding and RNG state, batches to the device,
checkpoint I/O (``avloc-ckpt-v1``: ``best.pt`` / ``last.pt`` of :func:`models.run.train.train`) and the class list.

Used by :mod:`models.run.train`, :mod:`models.run.evaluate`, :mod:`models.run.predict` and the EAR stages
(:mod:`models.avvp.train`); it imports none of them, so training may call evaluation (validation) without
an import cycle.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from extractors.io import atomic_path
from models.localizers.registry import build_model, make_config

CKPT_FORMAT = "avloc-ckpt-v1"


class VideoSubset(Dataset):
    """Items ``indices`` (in that order) of a dataset, exposing the subset's ``video_ids`` and
    ``annotations`` (what evaluation reads) and every other attribute of the wrapped set.  Used for the
    held-out selection slice of train (:mod:`models.run.train`) and the length-sorted full-length
    evaluation order (:mod:`models.run.evaluate`)."""

    def __init__(self, ds: Any, indices: Any) -> None:
        self.ds = ds
        self.indices = [int(i) for i in indices]
        self.video_ids = [ds.video_ids[i] for i in self.indices]
        self.annotations = {v: ds.annotations[v] for v in self.video_ids}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.ds[self.indices[i]]

    def __getattr__(self, name: str) -> Any:
        if name in ("ds", "indices", "video_ids", "annotations"):
            raise AttributeError(name)
        return getattr(self.ds, name)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor (and lists of tensors, e.g. ``segments``) of a batch to ``device``."""
    nb = device.type == "cuda"
    out: dict[str, Any] = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device, non_blocking=nb)
        elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
            out[k] = [t.to(device, non_blocking=nb) for t in v]
        else:
            out[k] = v
    return out


def amp_settings(device: torch.device, amp: bool) -> tuple[bool, torch.dtype]:
    """(enabled, dtype): autocast only on CUDA; bf16 when the GPU supports it."""
    if not amp or device.type != "cuda":
        return False, torch.float32
    return True, (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators: where every training entry (the localizers'
    :func:`models.run.train.train`, EAR's stages) starts, so a seed names one run on one machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global torch/NumPy/Python (and CUDA) RNG states as tensors and plain values, so a checkpoint
    holding them still loads with ``weights_only=True``; restored on resume, dropout and crop draws
    continue exactly where the interrupted run stopped."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` stored."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file renamed into place: a crash never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def dataset_model_fields(ds: Any) -> dict[str, Any]:
    """``num_classes``, ``audio_dim``, ``visual_dim``, ``t_max`` as the dataset defines them."""
    fields: dict[str, Any] = {}
    if hasattr(ds, "classes"):
        fields["num_classes"] = len(ds.classes)
    store = getattr(ds, "store", None)
    if store is not None and hasattr(store, "audio_dim"):
        fields["audio_dim"], fields["visual_dim"] = int(store.audio_dim), int(store.visual_dim)
    if hasattr(ds, "t_max"):
        fields["t_max"] = int(ds.t_max)
    if len(fields) < 4 and len(ds) > 0:
        item = ds[0]
        fields.setdefault("num_classes", int(item["labels"].shape[-1]))
        fields.setdefault("audio_dim", int(item["audio"].shape[-1]))
        fields.setdefault("visual_dim", int(item["visual"].shape[-1]))
        fields.setdefault("t_max", int(item["audio"].shape[0]))
    return fields


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not an {CKPT_FORMAT} checkpoint")
    return ckpt


def model_from_checkpoint(path: str | os.PathLike[str], model_name: str | None = None,
                          device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from a ``best.pt``/``last.pt`` written by :func:`models.run.train.train`."""
    ckpt = load_checkpoint(path)
    name = ckpt["model_name"]
    if model_name is not None and model_name != name:
        raise ValueError(f"{path} holds a {name!r} model, not {model_name!r}")
    model = build_model(name, **stored_config(name, ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(resolve_device(device))


#: config fields added after checkpoints were written, with the value that rebuilds those checkpoints' models
#: (a weak model's checkpoint from before decoders were chosen decodes with the paper's rule, as it did)
LEGACY_FIELDS: dict[str, Any] = {"proj_ln": False, "decoder": "paper"}


def stored_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's stored config, with :data:`LEGACY_FIELDS` filled in where an older checkpoint lacks them."""
    known = {f.name for f in dataclasses.fields(make_config(name))}
    return {**{k: v for k, v in LEGACY_FIELDS.items() if k in known and k not in config}, **config}


def read_classes(path: str | None, annotations: dict[str, Any]) -> list[str]:
    """Class list from a JSON list or a one-name-per-line text file; default: sorted labels."""
    from models.data.annotations import class_list

    if path is None:
        return class_list(annotations)
    text = Path(path).read_text(encoding="utf-8")
    try:
        classes = json.loads(text)
    except json.JSONDecodeError:
        classes = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{path}: expected a JSON list of class names or one name per line")
    return classes
