"""The extractor table: each feature extractor is declared once, and everything else derives from that.

An :class:`Extractor` says what it reads (the media stage's frames at the recipe's FPS, or its 16 kHz
wav), its windows, its output (``features/<name>/<vid>.npy``, ``(T, dim)`` float32), the registry
weights it loads and its ``extract`` entry. :mod:`extractors.extract` dispatches through :data:`EXTRACTORS`,
the workflow makes one ``features_<name>`` rule per visual extractor from it (workflow/rules/features.smk),
and a recipe's ``visual`` names one. Torch-free: the built-in entries are ``"module:function"`` strings
imported on first use, because the workflow and the media stage import this without torch.

A user's extractor is one Python file that calls :func:`register`, named in the config under
``extractor_modules:`` (docs/extending.md, "Add an extractor"); :func:`load_modules` runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Recipe = Any  # an extractors.recipes.Recipe (not imported: the recipes ask this table for min_frames)
Reads = Literal["frames", "audio"]
#: the audio stream every ``features`` job adds to its visual extractor's (a recipe names only the visual one)
AUDIO = "vggish"


@dataclass(frozen=True)
class Inputs:
    """What one ``extract`` call gets for one normalized video (the media stage's outputs)."""

    mp4: Path | None  # constant-FPS mp4 at ``recipe.fps`` (frames: extractors.frames.iter_frames)
    wav: Path | None  # 16 kHz mono wav
    recipe: Recipe
    weights_root: Path
    device: str  # resolved: "cpu", "cuda", "cuda:N"
    batch_size: int
    bf16: bool = False  # autocast, where the extractor supports it (I3D)
    flow: Path | None = None  # a stored RAFT/Farneback flow (extractors needing flow); computed in memory if None


Entry = Callable[[Inputs], tuple[Any, dict[str, Any]]]


def _full_window(r: Recipe) -> tuple[float, float]:
    return r.window_s, r.step_s


def _no_weights(r: Recipe) -> list[str]:
    return []


@dataclass(frozen=True)
class Extractor:
    """One feature extractor. ``extract(inputs)`` returns ``((T, dim) float32 features, provenance dict)``;
    the caller checks the width, writes the ``.npy`` and its provenance ``.json``."""

    name: str
    reads: Reads  # "frames": Inputs.mp4 at recipe.fps; "audio": Inputs.wav at 16 kHz
    dim: int  # feature width
    extract: Entry | str  # the function, or "module:function" imported on first use
    window: Callable[[Recipe], tuple[float, float]] = _full_window  # (span_s, step_s) of one feature step
    weights: Callable[[Recipe], list[str]] = _no_weights  # registry names (extractors/weight_registry.py)
    extra_frames: int = 0  # frames a window needs beyond recipe.stack (I3D: +1, the flow's next frame)
    uses_flow: bool = False  # consumes optical flow: a stored one (keep_flow) or computed in memory
    source: str = ""  # the file that declared it (user extractors)

    def run(self, inputs: Inputs) -> tuple[Any, dict[str, Any]]:
        fn = self.extract
        if isinstance(fn, str):
            module, _, attr = fn.partition(":")
            fn = getattr(importlib.import_module(module), attr)
        return fn(inputs)

    def weights_needed(self, recipe: Recipe) -> list[str]:
        """Checkpoints this extractor loads under ``recipe`` (none for random weights)."""
        return [] if recipe.weights == "random" else list(self.weights(recipe))


def _i3d_weights(r: Recipe) -> list[str]:
    return [*([r.raft_weights] if r.flow == "raft" else []), "i3d_rgb", "i3d_flow"]


EXTRACTORS: dict[str, Extractor] = {}
_LOADING = ""  # the user file load_module is running: what its register() calls are from


def register(extractor: Extractor) -> Extractor:
    """Add ``extractor`` to the table (a user module calls this once). Registering a name again from the
    same file replaces it (the file was reloaded); a built-in name or another file's name is an error."""
    if not extractor.source and _LOADING:
        extractor = dataclasses.replace(extractor, source=_LOADING)
    old = EXTRACTORS.get(extractor.name)
    if old is not None and (not old.source or old.source != extractor.source):
        raise ValueError(f"extractor {extractor.name!r} is already registered ({old.source or 'built in'})")
    if not extractor.name.isidentifier():
        raise ValueError(f"extractor name {extractor.name!r}: use letters, digits and _ (it names a folder and a rule)")
    EXTRACTORS[extractor.name] = extractor
    return extractor


for _builtin in (
    # two-stream I3D on RAFT (or Farneback) flow: UnAV-100 and the demo (extractors/i3d.py)
    Extractor("i3d", "frames", 2048, "extractors.i3d:extract", weights=_i3d_weights, extra_frames=1, uses_flow=True),
    # R(2+1)D-34: ActivityNet (extractors/r21d.py)
    Extractor("r21d", "frames", 512, "extractors.r21d:extract",
              weights=lambda r: ["r2plus1d_34_32_ig65m_ft_kinetics"]),
    # VGGish, 0.96 s examples every audio_hop_s (extractors/vggish.py)
    Extractor("vggish", "audio", 128, "extractors.vggish:extract", window=lambda r: (0.96, r.audio_hop_s),
              weights=lambda r: ["vggish"]),
):
    register(_builtin)


def get(name: str) -> Extractor:
    if name not in EXTRACTORS:
        raise KeyError(f"unknown extractor {name!r}; known: {sorted(EXTRACTORS)} (a user extractor's file goes "
                       "under `extractor_modules:` in the config, docs/extending.md)")
    return EXTRACTORS[name]


def visual_names() -> list[str]:
    """Extractors a recipe's ``visual`` may name (those reading frames)."""
    return [n for n, e in EXTRACTORS.items() if e.reads == "frames"]


def load_module(path: str | Path) -> None:
    """Run a user's extractor file (which calls :func:`register`). Loaded afresh on every call, under a
    name of its own path, so a resident worker (extractors/worker) never runs an edited file's old code."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"extractor module {path} (config `extractor_modules:`) not found")
    name = f"avloc_extractor_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    global _LOADING
    _LOADING, before = str(path), _LOADING
    try:
        spec.loader.exec_module(module)
    finally:
        _LOADING = before


def load_modules(paths: Iterable[str | Path]) -> None:
    """Run each user extractor file (the config's ``extractor_modules:``, the CLI's ``--extractor-module``)."""
    for p in paths:
        load_module(p)


def weights_needed(recipe: Recipe, name: str) -> list[str]:
    """Registry names of the checkpoints extractor ``name`` needs under ``recipe``."""
    return get(name).weights_needed(recipe)
