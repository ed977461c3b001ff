"""Feature recipes: every number that decides whether our features match the literature.

A recipe is the single source of truth for frame rate, window/step, resize, flow method and
weights. Snakemake passes ``recipe.fingerprint()`` as a rule ``param`` so that changing any
field reruns the affected jobs (edits inside packages do not trigger reruns, docs/recipes.md "Reruns").
See ``docs/recipes.md`` for where each default comes from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from extractors.registry import EXTRACTORS

FlowMethod = Literal["raft", "farneback"]
VisualModel = str  # an extractor reading frames (extractors/registry.py): i3d, r21d or a user's
WeightsMode = Literal["pretrained", "random"]
ShortAudio = Literal["pad", "cut"]
SHORT_AUDIO = ("pad", "cut")
#: Shortest audio that gives one VGGish example: 96 log-mel frames of 400 samples at a 160-sample hop
#: (``400 + 95 * 160`` samples at 16 kHz, extractors/vggish.py), 15 ms more than the nominal 0.96 s.
VGGISH_MIN_S = (400 + 95 * 160) / 16000
AudioAlignment = Literal["reference", "trimmed"]  # extractors.media: AAC priming kept (ADTS copy) or trimmed
AUDIO_ALIGNMENTS = ("reference", "trimmed")


@dataclass(frozen=True)
class Recipe:
    """How one dataset's videos become features.

    Feature ``t`` covers frames ``[step*t, step*t + stack)`` and audio
    ``[t*step/fps, t*step/fps + stack/fps)`` seconds; its time stamp is the window centre
    ``center_offset_s + t * step_s`` (0.48 + 0.32 t for UnAV-100, as the public loader).
    """

    name: str
    fps: float = 25.0
    stack: int = 24
    step: int = 8
    short_side: int = 256
    crop: int = 224
    visual: VisualModel = "i3d"
    audio_hop_s: float = 0.32
    flow: FlowMethod = "raft"
    raft_iters: int = 20
    raft_weights: str = "raft-sintel"
    weights: WeightsMode = "pretrained"
    seed: int = 0
    t_max: int = 224
    audio_alignment: AudioAlignment = "reference"
    version: str = "1"
    # Audio track shorter than the video: "pad" it with silence to the video's length (every visual step
    # kept; flagged in the media manifest and the VGGish provenance) or "cut", the reference: the store cuts
    # both streams to the shorter one, so the video's tail is lost (docs/recipes.md, "Lengths").
    short_audio: ShortAudio = "pad"

    @property
    def step_s(self) -> float:
        return self.step / self.fps

    @property
    def window_s(self) -> float:
        return self.stack / self.fps

    @property
    def min_frames(self) -> int:
        """Frames one visual window needs: ``stack`` plus the extractor's ``extra_frames`` (I3D's flow needs
        the frame after the window; an extractor not loaded here counts as I3D, the longer)."""
        ext = EXTRACTORS.get(self.visual)
        return self.stack + (1 if ext is None else ext.extra_frames)

    @property
    def min_duration_s(self) -> float:
        """Shortest video that gives >= 1 feature step in both streams: one visual window's frames at the
        recipe's FPS and one VGGish example (discovery's and the media stage's admission minimum)."""
        return max(self.min_frames / self.fps, VGGISH_MIN_S)

    @property
    def center_offset_s(self) -> float:
        return self.window_s / 2.0

    def step_time(self, t: int | float) -> float:
        """Centre time in seconds of feature index ``t``."""
        return self.center_offset_s + float(t) * self.step_s

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def provenance(self) -> dict[str, Any]:
        """The fields as provenance shows them (prediction JSON, summary pages): :func:`provenance_fields`."""
        return provenance_fields(self.to_dict())

    def fingerprint(self) -> str:
        """Stable short hash of every field, for Snakemake ``params`` and provenance."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


# Recipe fields that only one flow method reads: shown in provenance only when that method is the recipe's.
FLOW_ONLY_FIELDS = {"raft": ("raft_iters", "raft_weights")}


def provenance_fields(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe dict without the fields of a flow method it does not use: ``raft_iters``/``raft_weights``
    beside ``flow: farneback`` read as if RAFT had run. A visual model without optical flow (R(2+1)D) shows
    no flow fields at all. The checkpoint keeps the full recipe (``to_dict``); this is for people."""
    shown = dict(recipe)
    uses_flow = shown.get("visual", "i3d") == "i3d"
    for method, fields in FLOW_ONLY_FIELDS.items():
        if not uses_flow or shown.get("flow") != method:
            for f in fields:
                shown.pop(f, None)
    if not uses_flow:
        shown.pop("flow", None)
    return shown


RECIPES: dict[str, Recipe] = {
    # UnAV-100 (DAVEL / W-DAVEL): 25 FPS, I3D 24-frame windows, step 8 (0.32 s), VGGish hop 0.32 s.
    "unav100": Recipe(name="unav100"),
    # ActivityNet 1.3: 16 FPS, R(2+1)D-34, 16-frame windows with step 16 (one feature per second).
    "activitynet": Recipe(
        name="activitynet", fps=16.0, stack=16, step=16, visual="r21d", audio_hop_s=1.0, t_max=256,
        crop=112,
    ),
    # LLP (AVVP, EAR): 10 s clips, 1 s segments; 8 FPS frames, one segment per second (VALOR's scripts).
    "llp": Recipe(name="llp", fps=8.0, stack=8, step=8, audio_hop_s=0.96, t_max=10),
    # Offline CPU demo, NOT a reference recipe: random weights (explicit), classical (Farneback) flow, 12.5 FPS
    # with 12-frame windows and no overlap (step 12 = 0.96 s, audio hop 0.96 s), short side 224 (= the crop,
    # the smallest I3D accepts), so two CPU cores extract a few dozen clips in minutes. Half the frames of a
    # 25 FPS / 24-frame window: I3D's cost is per frame, and the demo's events last whole 0.96 s steps.
    "demo": Recipe(
        name="demo", fps=12.5, stack=12, step=12, short_side=224, audio_hop_s=0.96, flow="farneback",
        weights="random", t_max=32,
    ),
}


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """Look up a named recipe, optionally overriding fields (from config)."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name].replace(**overrides) if overrides else RECIPES[name]

