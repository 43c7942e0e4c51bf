"""The decoding engine: codes and a `Decoding` in, texts out.

`Decoder` is the one place that chooses how codes become text: beam search (`beam`) or the loop of greedy and
sampled decoding (`loop`); on a CPU that loop's steps in numpy (`arraystep.ArraySteps`), elsewhere the model's
own; on a GPU several blocks of `generate` in one batch; in a server, other requests' rows in the same batch
(`serve.batch`); a conditional model's guidance (`beam.Guided`). `api.Model` encodes texts and hands the engine
codes; the engine calls nothing above it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from ..io import checkpoint
from ..model.vae import TextVAE, reparameterize
from ..settings import BLOCK, PIECE_TOP_P, WORD_TOP_P, Decoding
from .arraystep import ArraySteps
from .beam import Guided, beam_search
from .loop import Streams, decode_setting, random_stream
from .sample import blocks, generate_prior, new_items

DEFAULT_GUIDANCE = 1.0      # classifier-free guidance weight for conditional models trained with label dropout
LENGTH_SLACK = 8            # characters a decoding of a text's code may run past 1.5 x the text's length
GPU_ROWS = 4096             # rows of `Decoder.generate`'s blocks decoded together on a GPU


def decode(net, code: torch.Tensor, d: Decoding, max_len: int, generator=None, noise_width: int = 0,
           limits: torch.Tensor | None = None, squash: str = "torch") -> torch.Tensor:
    """Ids (N, max_len) for conditioned codes (N, code) by the strategy of `d`; `limits` (N,), when given,
    stop each row at its own length limit (at most `max_len`). On a CPU, greedy and sampled decodings step in
    numpy (`arraystep`), squashing with `squash`'s sigmoid (see `arraystep.SQUASH`)."""
    beam = d.strategy == "beam"
    arrays = not beam and isinstance(net, TextVAE) and code.device.type == "cpu"
    if arrays:                 # on a CPU the steps run in numpy (see arraystep), whose own threads do the products
        net = ArraySteps.of(net, squash)
    rows = len(code) * (d.beam + 1 if beam else 1)
    with threads_for(0 if arrays else rows, code.device):
        if beam:
            return beam_search(net, code, beam=d.beam, max_len=max_len, length_penalty=d.length_penalty,
                               repetition_penalty=d.repetition_penalty, no_repeat_ngram=d.no_repeat_ngram,
                               limits=limits)
        ids = decode_setting(net, code, d, max_len, generator, noise_width, limits)
    return torch.from_numpy(ids) if isinstance(ids, np.ndarray) else ids


FEW_ROWS = 256      # encoding or decoding fewer rows than this on a CPU whose threads sleep between operations:
                    # one thread


@contextmanager
def threads_for(rows: int, device: torch.device, always: bool = False):
    """One thread for a small batch when OpenMP's threads sleep between operations (OMP_WAIT_POLICY=PASSIVE):
    a step of a few rows is a few dozen small operations, and waking the other threads for each cost more than
    it gave (measured here: a decoding step of 10 rows of the default sentence model, 1.2 ms in one thread,
    2.3 ms in two; encoding 2 sentences, 3.6 ms in one, 55 in two). Elsewhere the threads stay as they are. A
    decoding whose steps run in numpy passes 0 rows: torch then only keeps the loop's small operations.
    `always`: one thread whatever the policy (for work that shares the threads out itself)."""
    threads = torch.get_num_threads()
    if (device.type != "cpu" or rows >= FEW_ROWS or threads == 1
            or not always and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE"):
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Decoder:
    """Texts for codes by a `Decoding`, for one model (its vocabulary, its longest sensible item `max_len` and its
    label names): it chooses numpy or torch, CPU or GPU blocks, batch or beam. A server sets `batcher` (a
    `serve.batch.DecodeBatcher`), which decodes several threads' greedy and sampled codes together. Built from a
    model (`api.Model` makes its own) or from a checkpoint (`Decoder.load`); `sample.Sampler` is its face without
    torch, for generation from the prior on a CPU."""

    def __init__(self, model: TextVAE, tokenizer, max_len: int | Callable[[], int], labels: Sequence[str] = ()):
        """`max_len`: the longest item worth decoding, or a function that reads it when it is needed (from a run's
        information, which its owner may replace); `labels`: a conditional model's label names, in id order."""
        self.model = model
        self.tokenizer = tokenizer
        self._max_len = max_len
        self.labels = labels
        self.batcher = None

    @classmethod
    def load(cls, path, device: str = "cpu") -> Decoder:
        """The decoder of the checkpoint at `path` (a file or a run directory), as `textvae.load(path).decoder`."""
        ck = checkpoint.load(checkpoint.resolve(path), device=device)
        return cls(ck.model.eval(), ck.tokenizer, ck.run.decode_limit, list(ck.run.labels))

    @property
    def default_max_len(self) -> int:
        return self._max_len() if callable(self._max_len) else self._max_len

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def conditional(self) -> bool:
        return self.model.config.num_labels > 0

    @property
    def guidable(self) -> bool:
        """A conditional model trained with label dropout: it also models items with no label."""
        return self.conditional and self.model.config.null_label

    def label_ids(self, labels, n: int) -> torch.Tensor | None:
        """Label names (one, or one per item) as ids; None for an unconditional model."""
        if not self.conditional:
            if labels is not None:
                raise ValueError("this model was trained without labels")
            return None
        if labels is None:
            raise ValueError(f"this model is conditional: give a label ({', '.join(self.labels)})")
        names = [labels] * n if isinstance(labels, str) else list(labels)
        unknown = sorted({x for x in names if x not in self.labels})
        if unknown:
            raise ValueError(f"unknown label {unknown[0]!r}: the model knows {', '.join(self.labels)}")
        index = {name: i for i, name in enumerate(self.labels)}
        return torch.tensor([index[x] for x in names], dtype=torch.long, device=self.device)

    def resolve_guidance(self, guidance: float | None) -> float:
        if guidance is None:
            return DEFAULT_GUIDANCE if self.guidable else 0.0
        if guidance < 0:
            raise ValueError("guidance must be at least 0")
        if guidance and not self.guidable:
            raise ValueError("guidance needs a conditional model trained with label dropout")
        return float(guidance)

    def length_limit(self, chars: int) -> int:
        """The longest decoding worth making of the code of a text of `chars` characters: half as long again
        and `LENGTH_SLACK` characters more, within `default_max_len`. A decoding that grows past that has run
        away (a phrase repeated to the limit), and more characters would only cost time."""
        return min(self.default_max_len, math.ceil(1.5 * chars) + LENGTH_SLACK)

    def length_for(self, d: Decoding, texts: Sequence) -> Decoding:
        """`d` with the length limit (unless it sets one) of the longest of `texts` (see `length_limit`);
        codes given as numbers keep the model's limit."""
        if d.max_len is not None or not texts or not all(isinstance(t, str) for t in texts):
            return d
        return d.but(max_len=self.length_limit(max(len(t) for t in texts)))

    @staticmethod
    def _generator(seed: int | None) -> np.random.Generator | None:
        """The random stream of a decoding's sampling (numpy's, on any device): None draws unseeded."""
        return None if seed is None else random_stream(seed)

    @torch.no_grad()
    def decode(self, z, d: Decoding, seed: int | None = None, labels=None, batch_size: int = 4096,
               noise_width: int = 0, limits: Sequence[int] | None = None) -> list[str]:
        """Text for each code in z (N, Z) by `d`; `limits`, one length limit per code, stop each decoding sooner
        than the decoding's own limit. A conditional model decodes under `labels` (one name, or one per code),
        steered towards them by `d.guidance` (see `beam.Guided`): by default `DEFAULT_GUIDANCE` for a model
        trained with label dropout, 0 (none) otherwise."""
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=self.device)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        guidance = self.resolve_guidance(d.guidance)
        return self.codes(self.code_of(z, labels, guidance), d, seed, batch_size, guidance, noise_width, limits)

    def code_of(self, z: torch.Tensor, labels, guidance: float) -> torch.Tensor:
        """The decoder's codes for z (N, Z) under `labels`: (N, code), or with guidance (N, 2 * code)."""
        z = z.to(self.device)
        code = self.model.condition(z, self.label_ids(labels, len(z)))
        return self.beside_unlabelled(code, z) if guidance else code

    def beside_unlabelled(self, code: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Each code followed by the same z under the "no label" id: what `beam.Guided` reads, (N, 2 * code)."""
        z = z.to(self.device)
        none = torch.full((len(z),), self.model.config.num_labels, dtype=torch.long, device=self.device)
        return torch.cat([code.to(self.device), self.model.condition(z, none)], dim=1)

    @torch.no_grad()
    def codes(self, code: torch.Tensor, d: Decoding, seed: int | None = None, batch_size: int = 4096,
              guidance: float = 0.0, noise_width: int = 0, limits: Sequence[int] | None = None,
              squash: str = "torch") -> list[str]:
        """Text for each conditioned code (N, code); with guidance, each code is followed by the same z
        under the "no label" id (N, 2 * code). With a `batcher` (a server's), greedy and sampled decodings
        asked for at the same time by other threads run in one batch with this one. `squash`: the sigmoid of
        the CPU's numpy steps (`arraystep.SQUASH`)."""
        code = code.to(self.device)
        gen = self._generator(seed)
        max_len = d.max_len or self.default_max_len
        if self.batcher is not None and d.strategy != "beam" and len(code) <= batch_size:
            return self.batcher.decode(self, code, d, max_len, gen, noise_width, limits, guidance, squash)
        if d.strategy == "beam":
            batch_size = max(1, batch_size // d.beam)
        texts = []
        for start in range(0, len(code), batch_size):
            part = None if limits is None else limits[start:start + batch_size]
            texts += self.rows(code[start:start + batch_size], d, max_len, gen, noise_width, part, guidance, squash)
        return texts

    def rows(self, code: torch.Tensor, d: Decoding, max_len: int, generator=None, noise_width: int = 0,
             limits: Sequence[int] | None = None, guidance: float = 0.0, squash: str = "torch") -> list[str]:
        """Text for each conditioned code (N, code) in one batch (see `codes`); `generator` may be the
        `loop.Streams` of several callers' rows."""
        net = Guided(self.model, guidance) if guidance else self.model
        part = None if limits is None else torch.as_tensor(limits, device=self.device)
        ids = decode(net, code, d, max_len, generator, noise_width, part, squash)
        return [self.tokenizer.decode(row) for row in ids.tolist()]

    def sample_prior(self, n: int, seed: int | None = None) -> torch.Tensor:
        """n codes from the model's prior: N(0, I), or the Gaussian fitted to its training codes."""
        eps = (random_stream(seed) if seed is not None else np.random.default_rng()).standard_normal(
            (n, self.model.config.latent_dim), dtype=np.float32)
        return self.prior(torch.from_numpy(eps))

    def prior(self, eps: torch.Tensor) -> torch.Tensor:
        """The prior's codes for the standard normal noise `eps` (N, Z)."""
        with torch.no_grad(), threads_for(len(eps), self.device):
            return self.model.prior_sample(eps.to(self.device)).cpu()

    def generate(self, n: int, d: Decoding, seed: int, near: tuple[torch.Tensor, torch.Tensor] | None = None,
                 radius: float = 1.0, label=None, known=None) -> Iterator[list[str]]:
        """`n` new items, a block of at most `BLOCK` at a time: codes drawn from the prior (or around the posterior
        `near`, (mu, logvar)), decoded by `d`. Each block draws its codes and its sampling noise from its own seed,
        made from `seed` and the block's number (`sample.blocks`): the first k items are the same for every
        n >= k. From the prior on a CPU, the blocks are those `textvae generate` decodes without torch
        (`sample.generate_prior`), the same items for the same seed. Items that `known` holds (the training
        items, a `WordSet`) are drawn again (`sample.new_items`)."""
        first = self._draw(n, d, seed, near, radius, label)
        if known is None:
            yield from first
            return

        every = label if label is None or isinstance(label, str) else list(label)

        def draw(rows: list[int], again: int) -> list[str]:
            labels = every if every is None or isinstance(every, str) else [every[i] for i in rows]
            return [t for block in self._draw(len(rows), d, again, near, radius, labels) for t in block]
        yield from new_items(first, draw, seed, known)

    def _draw(self, n: int, d: Decoding, seed: int, near: tuple[torch.Tensor, torch.Tensor] | None = None,
              radius: float = 1.0, label=None) -> Iterator[list[str]]:
        """`generate`'s draws, training items and all."""
        if near is None and self.model.config.word_prior:
            yield from self._generate_words(n, d, seed)
            return
        prior = near is None and not self.conditional and self.device.type == "cpu"
        steps = ArraySteps.of(self.model, "numpy") if prior else None
        if prior and self.batcher is None and d.strategy != "beam":
            yield from generate_prior(steps, self.tokenizer, n, d, seed, d.max_len or self.default_max_len)
            return
        group: list = []             # on a GPU: blocks decoded together (see `_decode_blocks`)
        for start, eps, stream in blocks(n, seed, self.model.config.latent_dim):
            if prior:      # beam search (in torch), or the same decoding in a batch with a server's other requests
                yield self.codes(torch.from_numpy(steps.prior(eps)), d, seed=stream, noise_width=BLOCK,
                                 squash="numpy")
                continue
            eps = torch.from_numpy(eps)
            z = self.prior(eps) if near is None else reparameterize(*near, eps=radius * eps)
            labels = label if label is None or isinstance(label, str) else list(label)[start:start + len(eps)]
            if self.device.type == "cpu":
                yield self.decode(z, d, seed=stream, labels=labels, noise_width=BLOCK)
                continue
            group.append((z, labels, stream))
            if (len(group) + 1) * BLOCK > GPU_ROWS or start + len(eps) >= n:
                yield from self._decode_blocks(group, d)
                group = []

    @property
    def prior_top_p(self) -> float:
        """The nucleus a word prior draws from unless told: `PIECE_TOP_P` when its pieces are characters (words,
        names), else `WORD_TOP_P`."""
        return PIECE_TOP_P if self.model.config.slot_break < 0 else WORD_TOP_P

    def _generate_words(self, n: int, d: Decoding, seed: int) -> Iterator[list[str]]:
        """`generate` from a word prior: the setting's sampling (temperature, top-p, by default `prior_top_p`;
        greedy: the likeliest words) chooses the words, drawn by the prior; their spelling is read out greedily (or
        by beam search)."""
        temperature = d.temperature if d.strategy == "sample" else 0.0
        spell = d.but(strategy="beam" if d.strategy == "beam" else "greedy")
        for _, eps, _ in blocks(n, seed, self.model.config.latent_dim):
            with torch.no_grad(), threads_for(len(eps), self.device):
                z = self.model.prior_sample(torch.from_numpy(eps).to(self.device), temperature,
                                            self.prior_top_p if d.top_p is None else d.top_p)
            yield self.codes(z, spell)

    def _decode_blocks(self, group: list, d: Decoding) -> Iterator[list[str]]:
        """The texts of several blocks of `generate` (their codes, labels and sampling seeds), decoded in one
        batch on a GPU, where a step of 256 rows costs about what a step of thousands does. Each block's rows
        draw from the block's own stream (`loop.Streams`), so they decode as they would alone."""
        guidance = self.resolve_guidance(d.guidance)
        codes = [self.code_of(z, labels, guidance) for z, labels, _ in group]
        streams = Streams(tuple((self._generator(seed), len(z), BLOCK) for z, _, seed in group))
        texts = self.rows(torch.cat(codes), d, d.max_len or self.default_max_len, streams, 0, None, guidance)
        for z, _, _ in group:
            yield texts[:len(z)]
            texts = texts[len(z):]


def lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` points on the straight line from a to b, endpoints included: (steps, Z)."""
    t = torch.linspace(0.0, 1.0, steps, device=a.device, dtype=a.dtype).unsqueeze(1)
    return (1 - t) * a.unsqueeze(0) + t * b.unsqueeze(0)


def slerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` points on the great circle from a to b (White 2016), endpoints included: (steps, Z)."""
    t = torch.linspace(0.0, 1.0, steps, device=a.device, dtype=a.dtype).unsqueeze(1)
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(omega.sin().abs()) < 1e-6:
        return lerp(a, b, steps)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / omega.sin()
