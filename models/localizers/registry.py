"""Model registry: one name -> (config dataclass, module class) table for every localizer.

Training (:mod:`models.run.train`), evaluation (:mod:`models.run.evaluate`) and prediction look models up
here by name, so adding a localizer is one ``register`` call (or one dict entry) and nothing else.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from torch import nn

from models.localizers.base import ModelConfig
from models.localizers.clasp import CLASP, CLASPConfig
from models.localizers.input_norm import attach_input_norm
from models.localizers.mil import MILBaseline, MILConfig

MODELS: dict[str, tuple[type[ModelConfig], type[nn.Module]]] = {
    "clasp": (CLASPConfig, CLASP),
    "mil": (MILConfig, MILBaseline),
}


def register(name: str, cfg_cls: type[ModelConfig], model_cls: type[nn.Module]) -> None:
    """Add (or replace) a model under ``name``."""
    MODELS[name] = (cfg_cls, model_cls)


# Models imported on first use rather than here (module, config class, model class), so importing the
# registry never imports every model and never creates an import cycle.
LAZY: dict[str, tuple[str, str, str]] = {
    "avel": ("models.localizers.avel", "AVELConfig", "AVEL"),
    "ccnet": ("models.localizers.ccnet", "CCNetConfig", "CCNet"),
    "dave": ("models.localizers.dave", "DAVEConfig", "DAVE"),
    "ear": ("models.avvp.ear", "EARConfig", "EAR"),
}


def get_entry(name: str) -> tuple[type[ModelConfig], type[nn.Module]]:
    """``(config class, model class)`` of ``name``; lazily listed models are imported on demand."""
    if name not in MODELS and name in LAZY:
        module, cfg_name, model_name = LAZY[name]
        mod = importlib.import_module(module)
        register(name, getattr(mod, cfg_name), getattr(mod, model_name))
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    return MODELS[name]


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
    _, model_cls = get_entry(name)
    cfg = make_config(name, **overrides)
    return attach_input_norm(model_cls(cfg), cfg)
