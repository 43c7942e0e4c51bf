"""Generation from the prior, block by block, and a model opened for it without torch.

`Model.iter_generate` (on a CPU, from the prior) and `textvae generate` both draw their items here: the same
blocks, the same random streams, the same numpy steps (`arraystep.ArraySteps`, squashing by numpy's sigmoid) and
the same loop (`loop.decode_codes`), so a seed gives the same items through the API and the command line. The
command line opens the checkpoint with `Sampler.open`, which reads its arrays with safetensors' numpy reader: its
first items come out before torch would have finished loading (2-3 s on a 2-core machine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..settings import BLOCK, Decoding
from .arraystep import ArraySteps
from .loop import decode_setting, new_seed, random_stream


def mix(seed: int, block: int, stream: int) -> int:
    """A seed for one block and one use (codes, sampling noise), from the user's seed."""
    return (seed * 1_000_003 + block * 2 + stream) % (2**63 - 1)


def blocks(n: int, seed: int, latent_dim: int) -> Iterator[tuple[int, np.ndarray, int]]:
    """For each block of at most `BLOCK` of n items: its first item's index, its codes' standard normal noise
    (m, latent_dim) and its sampling's seed. Each block draws from its own streams, made from `seed` and the
    block's number, so with a seed the first k items are the same for every n >= k."""
    for b, start in enumerate(range(0, n, BLOCK)):
        m = min(BLOCK, n - start)
        eps = random_stream(mix(seed, b, 0)).standard_normal((BLOCK, latent_dim), dtype=np.float32)[:m]
        yield start, eps, mix(seed, b, 1)


REDRAWS = 10        # a draw that is a training item is drawn again, at most this many times (then it stays)


def new_items(first: Iterator[list[str]], draw: Callable[[list[int], int], list[str]], seed: int,
              known) -> Iterator[list[str]]:
    """The blocks of `first` with each item that `known` holds (the training items: `contains(texts)` -> bools)
    drawn again: `draw(rows, seed)` gives new items for those rows (their indices among all items) from a seed made
    from `seed`, the block and the round, so that a seed still gives the same items; after `REDRAWS` rounds an item
    still known stays."""
    start = 0
    for b, block in enumerate(first):
        block = list(block)
        again = np.flatnonzero(known.contains(block)).tolist()
        for r in range(1, REDRAWS + 1):
            if not again:
                break
            seq = np.random.SeedSequence([seed % 2**63, b, r]).generate_state(1, np.uint64)[0]
            fresh = draw([start + i for i in again], int(seq) % (2**63 - 1))
            for i, text in zip(again, fresh):
                block[i] = text
            again = [i for i, hit in zip(again, known.contains(fresh)) if hit]     # only the redrawn can be known
        yield block
        start += len(block)


def prior_texts(steps: ArraySteps, tokenizer, eps: np.ndarray, d: Decoding, max_len: int, seed: int) -> list[str]:
    """The texts of one block: codes from the prior by its noise `eps`, decoded by the setting `d` (greedy or
    sampled) with its sampling's `seed`."""
    ids = decode_setting(steps, steps.prior(eps), d, max_len, random_stream(seed), BLOCK)
    return [tokenizer.decode(row) for row in ids.tolist()]


def generate_prior(steps: ArraySteps, tokenizer, n: int, d: Decoding, seed: int,
                   max_len: int) -> Iterator[list[str]]:
    """n items from the prior, a block at a time (`blocks`, `prior_texts`): what `Model.iter_generate` and
    `textvae generate` give on a CPU."""
    for _, eps, stream in blocks(n, seed, steps.config.latent_dim):
        yield prior_texts(steps, tokenizer, eps, d, max_len, stream)


@dataclass
class Sampler:
    """A checkpoint opened for generation from the prior on a CPU, without torch."""
    steps: ArraySteps
    tokenizer: object
    run: object
    path: Path

    @classmethod
    def open(cls, path, d: Decoding | None = None) -> Sampler | None:
        """The checkpoint at `path` (a file or a run directory), or None when the torch model is needed: for the
        decoding `d` (beam search, guidance), a conditional model (labels), or weights that are not 32-bit floats.
        A checkpoint that is not usable at all raises `checkpoint.CheckpointError`, as `textvae.load` would."""
        if d is not None and (d.strategy == "beam" or d.guidance):
            return None
        from ..io import checkpoint
        p = checkpoint.resolve(path)
        config, tokenizer, run, _, _ = checkpoint._parse(p, checkpoint.read_metadata(p))
        if config.num_labels or config.word_prior:     # the word prior is drawn by torch
            return None
        weights = checkpoint.read_arrays(p)
        if weights is None or any(a.dtype not in (np.float32, np.int64) for a in weights.values()):
            return None
        try:
            steps = ArraySteps(config, weights, squash="numpy")
        except (KeyError, ValueError, IndexError):      # not what the configuration implies: the torch path says so
            return None
        return cls(steps, tokenizer, run, p)

    def iter_generate(self, n: int, d: Decoding, seed: int | None = None, new: bool = True) -> Iterator[list[str]]:
        """`Model.iter_generate` from the prior, for this checkpoint: with `new`, items the training text holds
        are drawn again (`new_items`)."""
        seed = seed if seed is not None else new_seed()
        limit = d.max_len or self.run.decode_limit
        first = generate_prior(self.steps, self.tokenizer, n, d, seed, limit)
        if not new or self.run.items is None:
            return first
        from ..data.words import WordSet

        def draw(rows: list[int], again: int) -> list[str]:
            return [t for block in generate_prior(self.steps, self.tokenizer, len(rows), d, again, limit) for t in block]
        return new_items(first, draw, seed, WordSet.from_dict(self.run.items))
