"""Characters <-> ids.

A character-level vocabulary fitted on the training items and saved inside every
checkpoint, so a model never needs its corpus again. Ids 0..3 are the special
tokens; a character never seen in training maps to <unk> instead of failing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..settings import NotUnicode

if TYPE_CHECKING:
    import torch

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

# A checkpoint's vocabulary is data from a file that may not be trusted: refuse
# anything larger than every Unicode code point could need.
MAX_VOCAB = 1_114_112 + len(SPECIALS)

# Half of a UTF-16 pair: a code point that is no character, and that no UTF-8 text can hold (see `NotUnicode`).
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def not_unicode(text: str) -> str | None:
    """Why `text` is not Unicode text (its first lone surrogate), or None when it is."""
    if text.isascii():
        return None
    found = LONE_SURROGATE.search(text)
    if found is None:
        return None
    return f"character {found.start() + 1:,} is a lone surrogate (U+{ord(found.group()):04X}), not a character"


def check_unicode(texts: Sequence[str]) -> None:
    """Refuse (`NotUnicode`) a text that is not Unicode text, whichever door it came in by."""
    for i, text in enumerate(texts):
        why = not_unicode(text)
        if why is not None:
            which = "the text" if len(texts) == 1 else f"text {i + 1:,}"
            raise NotUnicode(f"{which} is not Unicode text: {why}")


class CharTokenizer:
    """Maps single characters (Unicode code points) to ids and back."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("vocabulary must be distinct single characters")
        if len(chars) + len(SPECIALS) > MAX_VOCAB:
            raise ValueError(f"vocabulary of {len(chars)} characters is larger than Unicode")
        self.chars = chars
        self.itos = list(SPECIALS) + chars
        self.stoi = {c: i + len(SPECIALS) for i, c in enumerate(chars)}
        # Sorted code points and their ids, for vectorised encoding (no loop per character).
        points = np.array([ord(c) for c in chars], dtype=np.int64)
        order = np.argsort(points)
        self._points = points[order]
        self._ids = (order + len(SPECIALS)).astype(np.int64)

    @classmethod
    def fit(cls, texts: Iterable[str], min_count: int = 1) -> CharTokenizer:
        """Vocabulary of every character seen at least `min_count` times, in a stable order."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        kept = [c for c, n in counts.items() if n >= min_count]
        return cls(sorted(kept))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    # -- single items -------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Ids of `text`'s characters, without <bos>/<eos>; unknown characters become <unk>."""
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        return self._lookup(points)

    def _lookup(self, points: np.ndarray) -> np.ndarray:
        if len(self._points) == 0:
            return np.full(points.shape, UNK_ID, dtype=np.int64)
        pos = np.searchsorted(self._points, points).clip(0, len(self._points) - 1)
        found = self._points[pos] == points
        return np.where(found, self._ids[pos], UNK_ID)

    def decode(self, ids: Iterable[int], unk: str = "\N{REPLACEMENT CHARACTER}") -> str:
        """Text of `ids`: stops at <eos>, drops <pad>/<bos>, shows <unk> as `unk`."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            out.append(unk if i == UNK_ID or i >= len(self.itos) else self.itos[i])
        return "".join(out)

    def unknown_chars(self, text: str) -> set[str]:
        """Characters of `text` that the vocabulary lacks."""
        return {c for c in text if c not in self.stoi}

    # -- many items ---------------------------------------------------------------

    def encode_many(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All items as one flat id array plus offsets: item i is flat[offsets[i]:offsets[i+1]]."""
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        joined = "".join(texts)
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        return self._lookup(points).astype(np.int32), offsets

    def batch(self, texts: Sequence[str], add_eos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids (B, T) and lengths (B,); each row ends with <eos> when `add_eos`."""
        flat, offsets = self.encode_many(texts)
        return pad_batch(flat, offsets, np.arange(len(texts)), add_eos=add_eos)

    # -- persistence ---------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"type": "char", "specials": list(SPECIALS), "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        if not isinstance(d, dict) or d.get("type") != "char" or not isinstance(d.get("chars"), str):
            raise ValueError("not a character vocabulary")
        if list(d.get("specials", [])) != list(SPECIALS):
            raise ValueError("vocabulary has unexpected special tokens")
        return cls(list(d["chars"]))


def pad_batch(flat: np.ndarray, offsets: np.ndarray, index: np.ndarray, add_eos: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather items `index` of a flat id array into a padded (B, T) tensor, vectorised."""
    starts = offsets[index]
    n = offsets[index + 1] - starts                        # (B,) characters per item
    lengths = n + 1 if add_eos else n
    width = max(int(lengths.max()) if len(index) else 0, 1)
    cols = np.arange(width)[None, :]                       # (1, T)
    inside = cols < n[:, None]                             # (B, T) real characters
    gather = np.where(inside, starts[:, None] + cols, 0)
    out = np.where(inside, flat[gather] if len(flat) else 0, PAD_ID).astype(np.int64)
    if add_eos:
        out[np.arange(len(index)), n] = EOS_ID
    import torch
    return torch.from_numpy(out), torch.from_numpy(lengths.astype(np.int64))
