"""The grammar of workflow run names, ``<model>[-weak|-full][_shuffled][_seed<k>]``, parsed and built in one place.

``ccnet-weak_shuffled_seed2`` is CCNet with weak supervision, trained on shuffled labels (the chance line) with
seed 2. The Snakemake rules (which must not import torch while the DAG is built), the run scripts, the compare
table and the reports all read and write names through these functions, so the grammar cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from models.localizers.registry import SUPERVISIONS

CONTROL_SUFFIX = "_shuffled"
SEED_RE = re.compile(r"(.+)_seed(\d+)")


def split_seed(name: str) -> tuple[str, int | None]:
    """``clasp_shuffled_seed2`` -> (``clasp_shuffled``, 2): a run of a multi-seed reproduction
    (``reproduce: {seeds: [...]}``) other than the dataset's own ``train.seed``; ``clasp`` -> (``clasp``,
    None = that seed)."""
    m = SEED_RE.fullmatch(name)
    return (m.group(1), int(m.group(2))) if m else (name, None)


def split_control(name: str) -> tuple[str, bool]:
    """``clasp_shuffled`` -> (``clasp``, True): the workflow's name for a model's label-shuffled control
    (same data, recipe and seed; training labels permuted across videos, ``models.train``); a seed suffix
    is dropped (:func:`split_seed`)."""
    name = split_seed(name)[0]
    if name.endswith(CONTROL_SUFFIX):
        return name[: -len(CONTROL_SUFFIX)], True
    return name, False


def parse_model_name(name: str) -> tuple[str, str | None]:
    """``ccnet-weak`` -> (``ccnet``, ``weak``); ``clasp`` -> (``clasp``, None = the model's default);
    a control's ``_shuffled`` and a run's ``_seed<k>`` suffix are ignored (see :func:`split_control`)."""
    base, _, sup = split_control(name)[0].partition("-")
    if sup and sup not in SUPERVISIONS:
        raise ValueError(f"model {name!r}: supervision suffix must be {' or '.join(f'-{s}' for s in SUPERVISIONS)}")
    return base, (sup or None)


def model_pattern(models: Iterable[str]) -> str:
    """The regular expression of a configured model name (no control or seed suffix): one of ``models``
    with an optional supervision suffix; the config schema's ``models`` / ``controls`` items."""
    return f"^({'|'.join(models)})(-({'|'.join(SUPERVISIONS)}))?$"


def run_name(model: str, control: bool = False, seed: int | None = None) -> str:
    """The inverse of the parsers: ``run_name("clasp", True, 2)`` -> ``clasp_shuffled_seed2``."""
    return f"{model}{CONTROL_SUFFIX if control else ''}{'' if seed is None else f'_seed{seed}'}"
