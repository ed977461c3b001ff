"""Class prompts of the LLP text embeddings: CLIP ``"A photo of <event>"``, CLAP ``"This is the sound of
<event>"``. Shared by :mod:`extractors.llp.features` (CLIP) and :mod:`extractors.llp.clap` (CLAP), which
therefore need nothing from each other for their text side."""

from __future__ import annotations

from collections.abc import Sequence

VISUAL_PROMPT = "A photo of {}"
AUDIO_PROMPT = "This is the sound of {}"


def format_prompts(class_names: Sequence[str], template: str = VISUAL_PROMPT, lowercase: bool = False) -> list[str]:
    """``"A photo of <event>"`` per class, LLP's underscores replaced by spaces."""
    names = [str(c).replace("_", " ").strip() for c in class_names]
    return [template.format(n.lower() if lowercase else n) for n in names]
