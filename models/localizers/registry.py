"""Localizer registry: each localizer declares itself once, in its own module, and everything that needs the
list of models reads it from here.

A declaration is the decorator on the model class (as ActionFormer's ``@register_meta_arch``)::

    @register_localizer("clasp", config=CLASPConfig, supervision=("weak",), uses=("models.localizers.mil",))
    class CLASP(nn.Module): ...

It gives the name, the config dataclass, the supervision modes and the project modules the model builds on
beyond its own file (their source counts in its code fingerprint). Derived from the declarations: training,
evaluation and prediction lookups (:func:`get_entry`), the config check's model list and the schema's model
pattern (:mod:`models.run.config_check`), the code fingerprint's files (:mod:`models.run.code_fingerprint`) and
compare's supervision check (:mod:`models.run.compare`).

Found without an import list: the modules of :data:`PACKAGES` whose source holds a declaration (a text scan,
so importing the registry imports no model, no torch and nothing above this layer, EAR in ``models.avvp``
included), imported on the first lookup that needs them; plus a user's modules outside the package, named in
the config's ``localizer_modules`` (:func:`use_modules`, docs/extending.md).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from models.localizers.base import ModelConfig

SUPERVISIONS = ("weak", "full")  # video-level labels | segment labels: the `-weak` / `-full` of a model name
PACKAGES = ("models.localizers", "models.avvp")  # where built-in localizers declare themselves
ENV = "AVLOC_LOCALIZER_MODULES"  # the config's localizer_modules, for the job processes Snakemake starts
_DECLARES = re.compile(r"^@register_localizer\(", re.M)
_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LocalizerSpec:
    """One declaration. ``section``: the config section that trains it (``datasets``: a name in
    ``datasets.<ds>.models``; ``avvp``: EAR, trained by its own stages)."""

    name: str
    config: type[ModelConfig]
    model: type[nn.Module]
    supervision: tuple[str, ...]
    modules: tuple[str, ...]  # its own module first, then the project modules it builds on
    section: str = "datasets"


MODELS: dict[str, LocalizerSpec] = {}
_loaded: set[str] = set()  # localizer_modules entries already imported


def register(name: str, cfg_cls: type[ModelConfig], model_cls: type[nn.Module],
             supervision: Iterable[str] | None = None, uses: Iterable[str] = (), section: str = "datasets") -> None:
    """Add (or replace) a model under ``name``; ``supervision`` defaults to the model class's ``supervision``
    attribute (weak when it has none)."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or re.search(r"_shuffled$|_seed\d+$", name):
        raise ValueError(f"localizer name {name!r}: letters, digits and _ (a dash is the supervision suffix, "
                         f"_shuffled and _seed<k> the run suffixes: models.run.names)")
    modes = tuple(supervision) if supervision is not None else (getattr(model_cls, "supervision", "weak"),)
    bad = [m for m in modes if m not in SUPERVISIONS]
    if not modes or bad:
        raise ValueError(f"localizer {name!r}: supervision must be one or more of {SUPERVISIONS}, got {modes}")
    if len(modes) > 1 and "supervision" not in {f.name for f in dataclasses.fields(cfg_cls)}:
        raise ValueError(f"localizer {name!r} declares {modes}: its config needs a `supervision` field to choose")
    MODELS[name] = LocalizerSpec(name, cfg_cls, model_cls, modes, (model_cls.__module__, *uses), section)


def register_localizer(name: str, *, config: type[ModelConfig], supervision: Iterable[str],
                       uses: Iterable[str] = (), section: str = "datasets") -> Callable[[type], type]:
    """Class decorator: the one declaration of a localizer (the module docstring)."""

    def declare(model_cls: type) -> type:
        register(name, config, model_cls, supervision, uses, section)
        return model_cls

    return declare


@functools.cache
def builtin_modules() -> tuple[str, ...]:
    """Modules of :data:`PACKAGES` that declare a localizer, found by reading their source (not importing)."""
    found = []
    for pkg in PACKAGES:
        for path in sorted((_ROOT / pkg.replace(".", "/")).glob("*.py")):
            if path.name != "registry.py" and _DECLARES.search(path.read_text(encoding="utf-8")):
                found.append(f"{pkg}.{path.stem}")
    return tuple(found)


def load_module(entry: str) -> None:
    """Import one ``localizer_modules`` entry: a ``.py`` file (relative to the working directory) or the
    name of an importable module. Importing it runs its declaration."""
    if entry in _loaded:
        return
    if entry.endswith(".py"):
        path = Path(entry).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"localizer_modules: {entry!r} is not a file (relative to {Path.cwd()})")
        name = path.stem
        known = sys.modules.get(name)
        if known is not None and Path(getattr(known, "__file__", "") or "").resolve() != path:
            raise ValueError(f"localizer_modules: {entry!r} would import as {name!r}, which is already the module "
                             f"{known.__file__ or name}; rename the file")
        if known is None:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # before running it: dataclasses look their module up
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
    else:
        importlib.import_module(entry)
    _loaded.add(entry)


def use_modules(entries: Iterable[str]) -> None:
    """Import the config's ``localizer_modules`` and name them (as absolute paths) in :data:`ENV`, so the
    train / evaluate / predict jobs, separate processes started from this one, find the same models."""
    entries = [str(Path(e).resolve()) if e.endswith(".py") else e for e in entries]
    for entry in entries:
        load_module(entry)
    known = [e for e in os.environ.get(ENV, "").split(os.pathsep) if e]
    if entries:
        os.environ[ENV] = os.pathsep.join(dict.fromkeys([*known, *entries]))


def discover() -> None:
    """Import every declaring module: the built-in ones, then those named in :data:`ENV`."""
    for module in builtin_modules():
        importlib.import_module(module)
    for entry in os.environ.get(ENV, "").split(os.pathsep):
        if entry:
            load_module(entry)


def names(section: str | None = "datasets") -> list[str]:
    """Every declared localizer trained under config ``section`` (None: all), sorted."""
    discover()
    return sorted(n for n, s in MODELS.items() if section is None or s.section == section)


def get_spec(name: str) -> LocalizerSpec:
    """The declaration of ``name``; declaring modules are imported on the first miss."""
    if name not in MODELS:
        discover()
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    return MODELS[name]


def get_entry(name: str) -> tuple[type[ModelConfig], type[nn.Module]]:
    """``(config class, model class)`` of ``name``."""
    spec = get_spec(name)
    return spec.config, spec.model


def source_files(name: str) -> list[Path]:
    """The source files of ``name``'s declared modules (its own first), for the code fingerprint."""
    return [Path(importlib.import_module(m).__file__ or m).resolve() for m in get_spec(name).modules]


def make_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of model ``name`` with its defaults replaced by ``overrides`` (unknown keys fail)."""
    cfg_cls, _ = get_entry(name)
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown config field(s) for model {name!r}: {unknown}")
    return cfg_cls(**overrides)


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Instantiate model ``name`` with config overrides, e.g. ``build_model('clasp', num_classes=6)``."""
    from models.localizers.input_norm import attach_input_norm

    spec = get_spec(name)
    cfg = make_config(name, **overrides)
    model = spec.model(cfg)
    if not hasattr(model, "supervision"):  # the contract's attribute, from the declaration when it has one mode
        if len(spec.supervision) > 1:
            raise TypeError(f"localizer {name!r} declares {spec.supervision}: set self.supervision from its config")
        model.supervision = spec.supervision[0]
    return attach_input_norm(model, cfg)
