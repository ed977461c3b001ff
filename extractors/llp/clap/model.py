"""The CLAP model (laion_clap ``clap_module/model.py``): HTSAT + RoBERTa towers, their projections into the 512-D
joint space, the checkpoint converter and :func:`build_clap` (registry weights or seeded random ones).

Checkpoint (default ``clap_630k_fusion`` = ``630k-fusion-best.pt``): VALOR's ``utils/clap_preprocess.py``
(the recipe whose CLIP/CLAP features UWAV and EAR reuse) builds ``laion_clap.CLAP_Module(enable_fusion=True)``
(HTSAT-tiny, RoBERTa, ``fusion_type='aff_2d'``) and calls ``load_ckpt(model_id=2)`` -> ``630k-fusion-best.pt``.
The non-fusion checkpoints (``630k-best.pt``, ``630k-audioset-best.pt``) are registered too and load into
the same module built with ``enable_fusion=False``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extractors.llp.clap.frontend import quantize_int16
from extractors.llp.clap.htsat import HTSAT, HTSAT_CONFIGS
from extractors.llp.clap.roberta import RobertaConfig, RobertaEncoder
from extractors.llp.clap.tokenizer import ByteFallbackTokenizer, RobertaBPETokenizer
from extractors.weight_files import verify
from extractors.weight_loading import build_model_weights
from extractors.weight_registry import DEFAULT_ROOT, get_spec, weights_path

DEFAULT_CHECKPOINT = "clap_630k_fusion"
TOKENIZER_FILES = ("roberta_base_vocab", "roberta_base_merges")
WeightsMode = Literal["pretrained", "random"]
# registry name -> (audio model, enable_fusion); laion_clap hook.py download_names / model_id 0..3
CLAP_CHECKPOINTS: dict[str, tuple[str, bool]] = {
    "clap_630k": ("HTSAT-tiny", False),
    "clap_630k_audioset": ("HTSAT-tiny", False),
    "clap_630k_fusion": ("HTSAT-tiny", True),
    "clap_630k_audioset_fusion": ("HTSAT-tiny", True),
}


class MLPLayers(nn.Module):
    """laion_clap ``MLPLayers([512, 512, 512])`` (``audio_transform``/``text_transform``; training only)."""

    def __init__(self, units: Sequence[int] = (512, 512, 512), dropout: float = 0.1) -> None:
        super().__init__()
        seq: list[nn.Module] = []
        for a, b in zip(units[:-1], units[1:], strict=True):
            seq += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        self.sequential = nn.Sequential(*seq[:-2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


def _projection(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))


class CLAP(nn.Module):
    """laion_clap ``CLAP`` (HTSAT audio branch, RoBERTa text branch, 512-D joint space)."""

    def __init__(self, amodel: str = "HTSAT-tiny", enable_fusion: bool = False, joint_dim: int = 512) -> None:
        super().__init__()
        cfg = HTSAT_CONFIGS[amodel]
        self.amodel, self.enable_fusion = amodel, enable_fusion
        self.audio_branch = HTSAT(cfg, enable_fusion)
        self.text_branch = RobertaEncoder()
        self.text_transform = MLPLayers((joint_dim,) * 3)
        self.text_projection = _projection(RobertaConfig.hidden, joint_dim)
        self.audio_transform = MLPLayers((joint_dim,) * 3)
        self.audio_projection = _projection(cfg.num_features, joint_dim)
        self.logit_scale_a = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.logit_scale_t = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 480000)`` prepared waveforms -> ``(B, 512)`` L2-normalised (``get_audio_embedding``)."""
        return F.normalize(self.audio_projection(self.audio_branch(waveform)["embedding"]), dim=-1)

    def audio_embedding_from_data(self, clips: Sequence[np.ndarray], rng: np.random.Generator,
                                  device: str | torch.device = "cpu") -> torch.Tensor:
        """laion_clap ``hook.py:get_audio_embedding_from_data``: mono 48 kHz clips of any length -> ``(B, 512)``
        L2-normalised. Each clip: int16 round trip, :meth:`HTSAT.prepare` (clips > 10 s take the fusion
        branch of a fusion checkpoint, a random 10 s crop otherwise), one batched forward pass."""
        inputs = [self.audio_branch.prepare(torch.from_numpy(quantize_int16(np.asarray(c, np.float32))).to(device),
                                            rng) for c in clips]
        return F.normalize(self.audio_projection(self.audio_branch.forward_inputs(inputs)["embedding"]), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids + mask ``(B, 77)`` -> ``(B, 512)`` L2-normalised (``get_text_embedding``)."""
        return F.normalize(self.text_projection(self.text_branch(input_ids, attention_mask)), dim=-1)


def convert_laion_clap(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official checkpoint -> :class:`CLAP` keys: strip ``module.``, drop the stale ``position_ids`` buffer."""
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    drop = {"text_branch.embeddings.position_ids", "text_branch.embeddings.token_type_ids"}
    return {k: v for k, v in sd.items() if k not in drop}


def build_clap(mode: WeightsMode = "pretrained", root: Path | str = DEFAULT_ROOT, seed: int = 0,
               checkpoint: str = DEFAULT_CHECKPOINT) -> tuple[CLAP, Any, dict[str, Any]]:
    """CLAP model (eval mode), its tokenizer and provenance.

    ``pretrained``: the registered checkpoint and roberta-base tokenizer files must be present (else
    :class:`~extractors.weight_registry.WeightsError` with URL and path; never a fallback). ``random``: seeded,
    labelled weights and the labelled byte-fallback tokenizer (the BPE files are not needed offline).
    """
    if checkpoint not in CLAP_CHECKPOINTS:
        raise KeyError(f"unknown CLAP checkpoint {checkpoint!r}; known: {sorted(CLAP_CHECKPOINTS)}")
    amodel, fusion = CLAP_CHECKPOINTS[checkpoint]
    tokenizer: Any
    if mode == "pretrained":
        if not weights_path(checkpoint, root).is_file():
            verify(checkpoint, root)  # raises the registry's WeightsError (URL, path, fetch command)
        tok_digests = {n: verify(n, root) for n in TOKENIZER_FILES}
        tokenizer = RobertaBPETokenizer(weights_path(TOKENIZER_FILES[0], root), weights_path(TOKENIZER_FILES[1], root))
    elif mode == "random":
        tokenizer = ByteFallbackTokenizer()
    else:
        raise ValueError(f"weights mode must be 'pretrained' or 'random', got {mode!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLAP(amodel, enable_fusion=fusion)
    prov = build_model_weights(model, checkpoint, mode, root, seed)
    prov.update({"clap_model": amodel, "enable_fusion": fusion, "frontend": model.audio_branch.frontend,
                 "tokenizer": tokenizer.name})
    if mode == "pretrained":
        prov["tokenizer_files"] = {get_spec(n).filename: d for n, d in tok_digests.items()}
    return model.eval(), tokenizer, prov
