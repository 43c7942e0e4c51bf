"""The decoding loop of greedy and sampled decoding, and the rules every decoder follows, for torch tensors or
numpy arrays.

A model's own step (`model.TextVAE.step`, on a GPU, or in beam search and guidance) gives tensors; the CPU's
numpy steps (`arraystep.ArraySteps`) give arrays, and then the whole loop keeps arrays and numpy's functions:
this module imports torch only when it is handed tensors, so that `textvae generate` runs without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID

COMPACT = 4         # ended rows that leave a decoding's batch at once, at least (and an eighth of its rows)
_UNSEEDED = np.random.default_rng()     # the draws of an unseeded decoding on the numpy path


def random_stream(seed: int) -> np.random.Generator:
    """The random numbers of one use (a block's codes, its sampling) from a seed; any integer will do."""
    return np.random.Generator(np.random.PCG64(int(seed) % 2**64))


def new_seed() -> int:
    """A seed for a call that was given none."""
    return int(_UNSEEDED.integers(2**62))


def filter_logits(logits, top_k: int = 0, top_p: float = 1.0):
    """Mask all but the k best (top-k) and the smallest set of mass >= p (nucleus, Holtzman et al. 2020)."""
    if isinstance(logits, np.ndarray):
        return _filter_array(logits, top_k, top_p)
    import torch
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs           # mass of the strictly better characters
        remove_sorted = before >= top_p
        remove_sorted[..., 0] = False                   # always keep the best character
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def _filter_array(logits: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """`filter_logits` in numpy."""
    V = logits.shape[-1]
    if top_k and top_k < V:
        kth = np.partition(logits, V - top_k, axis=-1)[:, V - top_k:V - top_k + 1]
        logits = np.where(logits < kth, np.float32(-np.inf), logits)
    if top_p < 1.0:
        order = np.argsort(-logits, axis=-1, kind="stable")
        probs = softmax(np.take_along_axis(logits, order, axis=-1))
        remove_sorted = np.cumsum(probs, axis=-1) - probs >= top_p
        remove_sorted[:, 0] = False
        remove = np.empty_like(remove_sorted)
        np.put_along_axis(remove, order, remove_sorted, axis=-1)
        logits = np.where(remove, np.float32(-np.inf), logits)
    return logits


def softmax(x):
    """Softmax over the last dimension (arrays: numpy's, in single precision)."""
    if not isinstance(x, np.ndarray):
        return x.softmax(dim=-1)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def penalize_repeats(logits, out, t: int, penalty: float):
    """CTRL's repetition penalty (Keskar et al. 2019) on the characters already emitted: their positive
    scores are divided by `penalty` and their negative ones multiplied by it."""
    if penalty == 1.0 or t == 0:
        return logits
    if isinstance(logits, np.ndarray):
        seen = np.zeros(logits.shape, dtype=bool)
        seen[np.arange(len(out))[:, None], out[:, :t]] = True
        seen[:, PAD_ID] = False
        return np.where(seen, np.where(logits > 0, logits / penalty, logits * penalty), logits).astype(logits.dtype)
    import torch
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, out[:, :t], True)
    seen[:, PAD_ID] = False
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


class RepeatBlock:
    """No repeated n-grams: at each step, mask every character that would complete a run of `n` characters
    already present in the row (`no_repeat_ngram`). This is what stops "and the story and the story and the
    story" from looping until the length limit; natural repeats shorter than n stay possible.

    Kept up to date one character at a time, in a few operations per step whatever the length: for each
    earlier position i of a row, `run[:, 1 + i]` is the length of the longest run of characters ending at i
    that also ends at the row's last character (column 0 stays 0). A run of n - 1 there means that the
    character after i would repeat an n-gram."""

    def __init__(self, n: int, out):
        """`out`: the decoding's rows (N, max_len), a tensor or (on the CPU's numpy path) an array."""
        self.n, self.t = n, 0
        shape = (out.shape[0], out.shape[1] + 1)
        self.run = np.zeros(shape, dtype=np.int64) if isinstance(out, np.ndarray) else out.new_zeros(shape)

    def after(self, out, t: int) -> None:
        """Take in the characters `out[:, t]` just emitted."""
        self.run[:, 1:t + 1] = (out[:, :t] == out[:, t:t + 1]) * (self.run[:, :t] + 1)
        self.t = t

    def index(self, rows) -> None:
        """Follow a reordering or a selection of the rows (beam search; rows that leave a batch)."""
        self.run = self.run[rows]

    def mask(self, logits, out):
        """`logits` (N, V) with every character that would repeat an n-gram masked (<eos> is always allowed)."""
        t = self.t                                                                # positions before the last
        if t < self.n - 1 or self.n < 2:
            return logits
        repeats = self.run[:, 1:t + 1] >= self.n - 1                              # (N, t)
        if not bool(repeats.any()):
            return logits
        if isinstance(logits, np.ndarray):
            rows, at = np.nonzero(repeats)
            banned = np.zeros(logits.shape, dtype=bool)
            banned[rows, out[rows, at + 1]] = True
        else:
            import torch
            banned = torch.zeros_like(logits).scatter_add_(1, out[:, 1:t + 1], repeats.to(logits.dtype)) > 0
        banned[:, EOS_ID] = False
        logits[banned] = float("-inf")
        return logits


def constrain(logits, out, t: int, repetition_penalty: float = 1.0, block: RepeatBlock | None = None):
    """The rules every decoder follows at step t: never padding or <bos>, never an empty item (no <eos>
    first), then the repetition penalty and the n-gram block. Tensors, or on the CPU's numpy path arrays."""
    logits = mask_specials(logits if isinstance(logits, np.ndarray) else logits.float())
    if t == 0:
        logits[:, EOS_ID] = float("-inf")
    if repetition_penalty != 1.0:
        logits = penalize_repeats(logits, out, t, repetition_penalty)
    return logits if block is None else block.mask(logits, out)


def mask_specials(logits):
    logits[:, PAD_ID] = float("-inf")                   # never emit padding or <bos>
    logits[:, BOS_ID] = float("-inf")
    return logits


@dataclass(frozen=True)
class Streams:
    """The random streams of several callers' rows decoded in one batch: for each caller in row order, its
    generator, its number of rows and its `noise_width`. Each caller's rows draw their uniforms from its own
    generator exactly as they would alone (see `sample_rows`)."""
    parts: tuple[tuple[object, int, int], ...]


def _uniforms(generator, n: int, width: int, like):
    """n uniforms in [0, 1), at least `width` drawn, from `generator` (numpy's, torch's, or None: unseeded), as
    the kind of `like` (an array, or a tensor on its device)."""
    k = max(width, n)
    if isinstance(generator, np.random.Generator) or generator is None and isinstance(like, np.ndarray):
        u = (generator or _UNSEEDED).random(k, dtype=np.float32)[:n]
        if isinstance(like, np.ndarray):
            return u
        import torch
        return torch.from_numpy(u).to(like.device)
    import torch
    u = torch.rand((k,), generator=generator, device=like.device if generator is None else generator.device)[:n]
    return u.numpy() if isinstance(like, np.ndarray) else u.to(like.device)


def sample_rows(probs, generator=None, width: int = 0, rows=None, batch: int = 0):
    """One index per row of `probs` (N, V), by the inverse of each row's cumulative distribution at a uniform
    draw. At least `width` uniforms are drawn per call whatever N, so row i's draw does not depend on how many
    rows share the batch: decoding the first m codes of a block gives the same items as decoding all of it.
    `rows`: `probs` holds these rows of a batch of `batch` (the others have ended), whose draws are made all
    the same, so that every row draws what it would have. `generator`: numpy's or torch's, a `Streams`, or None."""
    N = probs.shape[0] if rows is None else batch
    if isinstance(generator, Streams):
        parts = [_uniforms(g, n, w, probs) for g, n, w in generator.parts]
        u = _join(parts)
    else:
        u = _uniforms(generator, N, width, probs)
    if rows is not None:
        u = u[rows]
    if isinstance(probs, np.ndarray):
        cdf = np.cumsum(probs, axis=-1, dtype=np.float32)                     # (N, V)
        idx = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=1)
        return np.minimum(idx, probs.shape[1] - 1)
    import torch
    cdf = probs.float().cumsum(dim=-1)
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return idx.clamp(max=probs.shape[1] - 1)


def _join(parts):
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch
    return torch.cat(parts)


def state_index(state, index, before=None):
    """The decoder state's rows `index` (on dim 1). Parts that the step passed through unchanged from `before`
    (the state it was given: a code's slots, keys and summary) are kept as they are: they come from the code
    alone, and beam search only moves rows among the hypotheses of the same code."""
    if isinstance(state, tuple):
        kept = before if isinstance(before, tuple) and len(before) == len(state) else (None,) * len(state)
        return tuple(s if s is b else s[:, index] for s, b in zip(state, kept))
    return state[:, index]


def decode_codes(model, z, max_len: int = 64, greedy: bool = True, temperature: float = 1.0, top_k: int = 0,
                 top_p: float | None = 1.0, repetition_penalty: float = 1.0, generator=None, noise_width: int = 0,
                 no_repeat_ngram: int = 0, limits=None):
    """Decode codes z (N, code) into ids (N, max_len), padded with <pad> after each <eos> (or after row i's
    `limits[i]` characters, when given). Sampling draws `noise_width` uniforms per step at least (see
    `sample_rows`). Rows that have ended leave the batch once enough of them have (`COMPACT`): a step's cost
    grows with its rows, and the rest of a batch often runs on long after most of it is done.

    `model` is a `TextVAE` (or `decode.Guided`), whose tensors the loop keeps, or the CPU's numpy steps
    (`arraystep.ArraySteps`), whose arrays it keeps: z, limits and the result are then arrays too.

    For a conditional model, z is the conditioned code, `model.condition(z, labels)`. `top_p` None: 1, all."""
    top_p = 1.0 if top_p is None else top_p
    arrays = getattr(model, "arrays", False)
    if arrays:
        z, limits = _array(z), None if limits is None else _array(limits)
        return _loop(model, z, max_len, greedy, temperature, top_k, top_p, repetition_penalty, generator,
                     noise_width, no_repeat_ngram, limits)
    import torch
    with torch.no_grad():
        return _loop(model, z, max_len, greedy, temperature, top_k, top_p, repetition_penalty, generator,
                     noise_width, no_repeat_ngram, limits)


def decode_setting(net, code, d, max_len: int, generator=None, noise_width: int = 0, limits=None):
    """Greedy or sampled decoding (`decode_codes`) of codes by a `settings.Decoding` that is not beam search."""
    return decode_codes(net, code, max_len=max_len, greedy=d.strategy == "greedy", temperature=d.temperature,
                        top_k=d.top_k, top_p=d.top_p, repetition_penalty=d.repetition_penalty, generator=generator,
                        noise_width=noise_width, no_repeat_ngram=d.no_repeat_ngram, limits=limits)


def _array(x) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()


def _loop(model, z, max_len, greedy, temperature, top_k, top_p, repetition_penalty, generator, noise_width,
          no_repeat_ngram, limits):
    N = z.shape[0]
    if isinstance(z, np.ndarray):
        def full(shape, value):
            return np.full(shape, value, dtype=np.int64)
    else:
        import torch

        def full(shape, value):
            return torch.full(shape, value, dtype=torch.long, device=z.device)
    result, out = full((N, max_len), PAD_ID), full((N, max_len), PAD_ID)   # all rows; those still decoding
    rows = None                                          # which rows of the batch those are, once some have left
    prev = full((N,), BOS_ID)
    done = full((N,), 0) > 0
    state = model.initial_state(z)
    block = RepeatBlock(no_repeat_ngram, out) if no_repeat_ngram else None
    for t in range(max_len):
        logits, state = model.step(z, prev, state)       # (n, V)
        logits = constrain(logits, out, t, repetition_penalty, block)
        if greedy or temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = softmax(filter_logits(logits / temperature, top_k, top_p))
            nxt = sample_rows(probs, generator, noise_width, rows, N)
        nxt[done] = PAD_ID
        out[:, t] = nxt
        if block is not None:
            block.after(out, t)
        done |= nxt == EOS_ID
        if limits is not None:
            done |= limits <= t + 1
        ended = int(done.sum())
        if ended == len(done):
            break
        if ended >= max(COMPACT, len(done) // 8):       # let the ended rows go
            keep = (~done).nonzero()[0] if isinstance(done, np.ndarray) else (~done).nonzero().squeeze(1)
            result[done if rows is None else rows[done]] = out[done]
            rows = keep if rows is None else rows[keep]
            out, nxt, done, z = out[keep], nxt[keep], done[keep], z[keep]
            state = model.select_rows(state, keep) if isinstance(out, np.ndarray) else state_index(state, keep)
            if limits is not None:
                limits = limits[keep]
            if block is not None:
                block.index(keep)
        prev = nxt
    if rows is not None:
        result[rows] = out
        out = result
    return out
