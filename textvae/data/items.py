"""Items as token ids: all of a corpus's items in one flat array, and their length-bucketed batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .tokenizer import CharTokenizer, pad_batch

if TYPE_CHECKING:
    import torch


class EncodedItems:
    """Token ids of many items in one flat array: cheap to hold and to batch."""

    def __init__(self, texts: Sequence[str], tokenizer: CharTokenizer, label_ids: Sequence[int] | None = None):
        self.flat, self.offsets = tokenizer.encode_many(texts)
        self.lengths = np.diff(self.offsets)
        self.label_ids = None if label_ids is None else np.asarray(label_ids, dtype=np.int64)

    def labels_of(self, index) -> torch.Tensor | None:
        """Label ids (B,) of items `index`, or None for unlabelled data."""
        if self.label_ids is None:
            return None
        import torch
        return torch.from_numpy(self.label_ids[np.asarray(index, dtype=np.int64)])

    @classmethod
    def from_arrays(cls, flat: np.ndarray, offsets: np.ndarray) -> EncodedItems:
        """Items already tokenised (possibly memory-mapped arrays)."""
        self = cls.__new__(cls)
        self.label_ids = None
        self.flat, self.offsets = flat, np.asarray(offsets)
        self.lengths = np.diff(self.offsets)
        return self

    def __len__(self) -> int:
        return len(self.lengths)

    def head(self, chars: int) -> EncodedItems:
        """The first items, as many as hold `chars` characters (at least one; all of them if they fit)."""
        n = max(1, int(np.searchsorted(self.offsets[1:], chars, side="right")))
        if n >= len(self):
            return self
        part = EncodedItems.from_arrays(self.flat[:self.offsets[n]], self.offsets[:n + 1])
        part.label_ids = None if self.label_ids is None else self.label_ids[:n]
        return part

    def release_pages(self) -> None:
        """Let the kernel drop the pages of a memory-mapped corpus that batches have touched (they are
        clean and re-read on demand), so resident memory stays flat over a long epoch."""
        import mmap
        for arr in (self.flat, self.offsets):
            mm = getattr(arr, "_mmap", None)
            if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
                mm.madvise(mmap.MADV_DONTNEED)

    @property
    def num_chars(self) -> int:
        """Characters the model predicts: every character plus one <eos> per item."""
        return int(self.lengths.sum()) + len(self)

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_batch(self.flat, self.offsets, np.asarray(index, dtype=np.int64))

    def batch_indices(self, batch_size: int, shuffle: bool, seed: int = 0) -> list[np.ndarray]:
        """Length-bucketed batches: items of similar length together, so padding is rare.

        Shuffled items are sorted by length inside pools of 50 batches, cut into batches,
        and the batches shuffled; the same seed gives the same batches.
        """
        n = len(self)
        if not shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i:i + batch_size] for i in range(0, n, batch_size)]
        rng = np.random.default_rng(seed)
        order = rng.permutation(n)
        pool = batch_size * 50
        batches = []
        for start in range(0, n, pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
        rng.shuffle(batches)
        return batches

    def iterate(self, batch_size: int, shuffle: bool = False, seed: int = 0
                ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        for index in self.batch_indices(batch_size, shuffle, seed):
            tokens, lengths = self.batch(index)
            yield index, tokens, lengths
