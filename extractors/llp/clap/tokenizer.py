"""The tokenizers of CLAP's text tower: roberta-base's byte-level BPE, and a byte fallback for random weights.

Text (VALOR ``get_text_embedding``): RoBERTa byte-level BPE (``vocab.json`` + ``merges.txt`` of ``roberta-base``),
``<s> ... </s>`` padded to 77 tokens with ``<pad>`` (id 1) and an attention mask.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

MAX_TEXT_LEN = 77
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 1, 0, 2, 3
BYTE_FALLBACK_OFFSET = 4  # byte b -> id 4 + b (after <s>, <pad>, </s>, <unk>)


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map (byte-level BPE alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


_GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class RobertaBPETokenizer:
    """roberta-base byte-level BPE (``vocab.json`` + ``merges.txt``), laion_clap's call convention:
    ``padding="max_length", truncation=True, max_length=77``."""

    name = "roberta-base byte-level BPE"

    def __init__(self, vocab_file: Path | str, merges_file: Path | str, max_length: int = MAX_TEXT_LEN) -> None:
        import regex

        self.encoder: dict[str, int] = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        lines = Path(merges_file).read_text(encoding="utf-8").splitlines()
        merges = [tuple(ln.split()) for ln in lines if ln and not ln.startswith("#version")]
        self.ranks = {m: i for i, m in enumerate(merges) if len(m) == 2}
        self.pattern = regex.compile(_GPT2_SPLIT)
        self.max_length = max_length
        self.bos, self.eos = self.encoder.get("<s>", BOS_ID), self.encoder.get("</s>", EOS_ID)
        self.pad, self.unk = self.encoder.get("<pad>", PAD_ID), self.encoder.get("<unk>", UNK_ID)
        self._cache: dict[str, list[str]] = {}

    def _bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            best = min(zip(parts, parts[1:], strict=False), key=lambda p: self.ranks.get(p, math.inf))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        """Token ids without ``<s>``/``</s>``."""
        b2u = _bytes_to_unicode()
        ids: list[int] = []
        for piece in self.pattern.findall(text):
            word = "".join(b2u[b] for b in piece.encode("utf-8"))
            ids += [self.encoder.get(t, self.unk) for t in self._bpe(word)]
        return ids

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return _pad_batch([self.encode(t) for t in texts], self.max_length, self.bos, self.eos, self.pad)


class ByteFallbackTokenizer:
    """Offline stand-in for random-weights runs: UTF-8 byte ``b`` -> id ``4 + b``, with RoBERTa's
    ``<s>``=0, ``<pad>``=1, ``</s>``=2. Never used with pretrained weights (it is not RoBERTa's BPE)."""

    name = "byte-fallback (random weights)"

    def __init__(self, max_length: int = MAX_TEXT_LEN) -> None:
        self.max_length = max_length

    def encode(self, text: str) -> list[int]:
        return [BYTE_FALLBACK_OFFSET + b for b in text.encode("utf-8")]

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return _pad_batch([self.encode(t) for t in texts], self.max_length, BOS_ID, EOS_ID, PAD_ID)


def _pad_batch(seqs: list[list[int]], max_length: int, bos: int, eos: int, pad: int) -> dict[str, torch.Tensor]:
    """``<s> ids[:max_length-2] </s>`` then ``<pad>`` up to ``max_length``; mask 1 on real tokens."""
    ids = torch.full((len(seqs), max_length), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), max_length), dtype=torch.long)
    for i, s in enumerate(seqs):
        row = [bos, *s[: max_length - 2], eos]
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}
