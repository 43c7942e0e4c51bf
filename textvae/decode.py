"""From codes to text: batched greedy and stochastic decoding, and homotopies between codes.

Every function decodes a whole batch of codes at once, one time step per loop turn
(never one item at a time); a sequence stops at <eos> or at `max_len` characters.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .arraystep import ArraySteps
from .model import TextVAE
from .settings import STRATEGIES, Decoding  # noqa: F401 (their home before settings)
from .tokenizer import BOS_ID, EOS_ID, PAD_ID


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Mask all but the k best (top-k) and the smallest set of mass >= p (nucleus, Holtzman et al. 2020)."""
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


def penalize_repeats(logits: torch.Tensor, out: torch.Tensor, t: int, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019) on the characters already emitted: their positive
    scores are divided by `penalty` and their negative ones multiplied by it."""
    if penalty == 1.0 or t == 0:
        return logits
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
            banned = torch.zeros_like(logits).scatter_add_(1, out[:, 1:t + 1], repeats.to(logits.dtype)) > 0
        banned[:, EOS_ID] = False
        logits[banned] = float("-inf")
        return logits


def constrain(logits, out, t: int, repetition_penalty: float = 1.0, block: RepeatBlock | None = None):
    """The rules every decoder follows at step t: never padding or <bos>, never an empty item (no <eos>
    first), then the repetition penalty and the n-gram block. Tensors, or on the CPU's numpy path arrays."""
    logits = _mask_specials(logits if isinstance(logits, np.ndarray) else logits.float())
    if t == 0:
        logits[:, EOS_ID] = float("-inf")
    if repetition_penalty != 1.0:
        logits = _like(logits, penalize_repeats(_tensor(logits), _tensor(out), t, repetition_penalty))
    return logits if block is None else block.mask(logits, out)


def _tensor(x):
    """A tensor of x, an array or a tensor (an array's memory is shared, not copied)."""
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


def _like(x, t: torch.Tensor):
    """`t` as the kind of x: an array when x is one."""
    return t.numpy() if isinstance(x, np.ndarray) else t


def _mask_specials(logits: torch.Tensor) -> torch.Tensor:
    logits[:, PAD_ID] = float("-inf")                   # never emit padding or <bos>
    logits[:, BOS_ID] = float("-inf")
    return logits


class Guided:
    """A conditional model's decoder steered towards its label (classifier-free guidance, Ho & Salimans 2022).

    Each code is the conditioned code and the same z under the "no label" id, side by side: (N, 2 * code).
    The next-character scores are log p(c | z, y) + w * (log p(c | z, y) - log p(c | z, no label)),
    so w = 0 is plain decoding and a larger w favours what makes the label likely. It has the decoder's
    interface (`initial_state`, `step`, `decode_code`), so every decoding function here takes it.
    """

    def __init__(self, model: TextVAE, weight: float):
        self.model, self.weight, self.config = model, weight, model.config

    @staticmethod
    def _halves(state):
        """(h_y, c_y, h_none, c_none) -> (h, c) of the doubled batch; (h_y, h_none) -> h."""
        k = len(state) // 2
        joined = tuple(torch.cat([a, b], dim=1) for a, b in zip(state[:k], state[k:]))
        return joined if k > 1 else joined[0]

    @staticmethod
    def _split(state, n: int):
        if isinstance(state, tuple):
            return tuple(s[:, :n] for s in state) + tuple(s[:, n:] for s in state)
        return state[:, :n], state[:, n:]

    def _both(self, code: torch.Tensor) -> torch.Tensor:
        y, none = code.chunk(2, dim=-1)
        return torch.cat([y, none], dim=0)                # (2N, code)

    def _mix(self, logits: torch.Tensor, n: int) -> torch.Tensor:
        logp = logits.float().log_softmax(-1)
        y, none = logp[:n], logp[n:]
        return y + self.weight * (y - none)

    def initial_state(self, code: torch.Tensor):
        return self._split(self.model.initial_state(self._both(code)), code.shape[0])

    def step(self, code: torch.Tensor, inputs: torch.Tensor, state):
        n = code.shape[0]
        logits, state = self.model.step(self._both(code), torch.cat([inputs, inputs]), self._halves(state))
        return self._mix(logits, n), self._split(state, n)

    def decode_code(self, code: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self._mix(self.model.decode_code(self._both(code), torch.cat([inputs, inputs])), code.shape[0])


@dataclass(frozen=True)
class Streams:
    """The random streams of several callers' rows decoded in one batch: for each caller in row order, its
    generator, its number of rows and its `noise_width`. Each caller's rows draw their uniforms from its own
    generator exactly as they would alone (see `sample_rows`)."""
    parts: tuple[tuple[torch.Generator | None, int, int], ...]


def sample_rows(probs: torch.Tensor, generator: torch.Generator | Streams | None = None, width: int = 0,
                rows: torch.Tensor | None = None, batch: int = 0) -> torch.Tensor:
    """One index per row of `probs` (N, V), by the inverse of each row's cumulative distribution at a uniform
    draw. At least `width` uniforms are drawn per call whatever N, so row i's draw does not depend on how many
    rows share the batch: decoding the first m codes of a block gives the same items as decoding all of it.
    `rows`: `probs` holds these rows of a batch of `batch` (the others have ended), whose draws are made all
    the same, so that every row draws what it would have."""
    N = probs.shape[0] if rows is None else batch
    if isinstance(generator, Streams):
        u = torch.cat([torch.rand((max(w, n),), generator=g, device=probs.device)[:n] for g, n, w in generator.parts])
    else:
        u = torch.rand((max(width, N),), generator=generator, device=probs.device)[:N]
    if rows is not None:
        u = u[rows]
    cdf = probs.float().cumsum(dim=-1)                                       # (N, V)
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return idx.clamp(max=probs.shape[1] - 1)


@torch.no_grad()
def decode_codes(model: TextVAE, z: torch.Tensor, max_len: int = 64, greedy: bool = True,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 generator: torch.Generator | Streams | None = None, noise_width: int = 0, no_repeat_ngram: int = 0,
                 limits: torch.Tensor | None = None) -> torch.Tensor:
    """Decode codes z (N, code) into ids (N, max_len), padded with <pad> after each <eos> (or after row i's
    `limits[i]` characters, when given). Sampling draws `noise_width` uniforms per step at least (see
    `sample_rows`). Rows that have ended leave the batch once enough of them have (`COMPACT`): a step's cost
    grows with its rows, and the rest of a batch often runs on long after most of it is done.

    `model` may be the CPU's numpy steps (`arraystep.ArraySteps`): the loop's own arrays are then numpy's too
    (its operations are written for either kind), and only sampling turns to torch's functions.

    For a conditional model, z is the conditioned code, `model.condition(z, labels)`."""
    N = z.shape[0]
    if isinstance(model, ArraySteps):
        full = lambda shape, value: np.full(shape, value, dtype=np.int64)         
        limits = None if limits is None else limits.numpy()
    else:
        full = lambda shape, value: torch.full(shape, value, dtype=torch.long, device=z.device)
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
            probs = filter_logits(_tensor(logits) / temperature, top_k, top_p).softmax(dim=-1)
            nxt = _like(logits, sample_rows(probs, generator, noise_width, None if rows is None else _tensor(rows), N))
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
            out, nxt, done, z = out[keep], nxt[keep], done[keep], z[_tensor(keep)]
            state = model.select_rows(state, keep) if isinstance(model, ArraySteps) else _state_index(state, keep)
            if limits is not None:
                limits = limits[keep]
            if block is not None:
                block.index(keep)
        prev = nxt
    if rows is not None:
        result[rows] = out
        out = result
    return _tensor(out)


COMPACT = 4         # ended rows that leave a decoding's batch at once, at least (and an eighth of its rows)


def decode(net, code: torch.Tensor, d: Decoding, max_len: int, generator: torch.Generator | Streams | None = None,
           noise_width: int = 0, limits: torch.Tensor | None = None) -> torch.Tensor:
    """Ids (N, max_len) for conditioned codes (N, code) by the strategy of `d`; `limits` (N,), when given,
    stop each row at its own length limit (at most `max_len`)."""
    beam = d.strategy == "beam"
    arrays = not beam and isinstance(net, TextVAE) and code.device.type == "cpu"
    if arrays:                 # on a CPU the steps run in numpy (see arraystep), whose own threads do the products
        net = ArraySteps.of(net)
    rows = len(code) * (d.beam + 1 if beam else 1)
    with threads_for(0 if arrays else rows, code.device):
        if beam:
            return beam_search(net, code, beam=d.beam, max_len=max_len, length_penalty=d.length_penalty,
                               repetition_penalty=d.repetition_penalty, no_repeat_ngram=d.no_repeat_ngram,
                               limits=limits)
        return decode_codes(net, code, max_len=max_len, greedy=d.strategy == "greedy", temperature=d.temperature,
                            top_k=d.top_k, top_p=d.top_p, repetition_penalty=d.repetition_penalty,
                            generator=generator, noise_width=noise_width, no_repeat_ngram=d.no_repeat_ngram,
                            limits=limits)


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


@torch.no_grad()
def sequence_logprob(model: TextVAE, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids | z) for decoded rows (N, T) that end in <eos> (or are cut at T): (N,)."""
    from .model import decoder_inputs
    logits = model.decode_code(z, decoder_inputs(ids)).float()
    logp = _mask_specials(logits.reshape(-1, logits.shape[-1])).log_softmax(-1).view_as(logits)
    picked = logp.gather(2, ids.unsqueeze(2)).squeeze(2)                   # (N, T)
    return picked.masked_fill(ids == PAD_ID, 0.0).sum(dim=1)


def _state_index(state, index: torch.Tensor, before=None):
    """The decoder state's rows `index` (on dim 1). Parts that the step passed through unchanged from `before`
    (the state it was given: a code's slots, keys and summary) are kept as they are: they come from the code
    alone, and beam search only moves rows among the hypotheses of the same code."""
    if isinstance(state, tuple):
        kept = before if isinstance(before, tuple) and len(before) == len(state) else (None,) * len(state)
        return tuple(s if s is b else s[:, index] for s, b in zip(state, kept))
    return state[:, index]


@torch.no_grad()
def beam_search(model: TextVAE, z: torch.Tensor, beam: int = 5, max_len: int = 64, length_penalty: float = 1.0,
                repetition_penalty: float = 1.0, no_repeat_ngram: int = 0,
                limits: torch.Tensor | None = None) -> torch.Tensor:
    """Beam search for each code in z (N, Z), all codes and beams in one batch: ids (N, max_len), each row
    ended at its length limit `limits[i]` when given.

    Hypotheses are ranked by log p(x|z) / len(x)^length_penalty (0: plain log-probability; 1: per
    character). Finished hypotheses stay in the beam with their score frozen. Unless repeats are
    penalised or blocked, the greedy decoding of each code runs beside the beams, in the same batch, and
    is also a candidate, so a wider beam never ends below greedy by that same ranking.
    """
    N, W = z.shape[0], beam
    R = N * W                                                               # beam rows, then G greedy rows
    G = N if repetition_penalty == 1.0 and not no_repeat_ngram else 0
    device = z.device
    V = model.config.vocab_size
    zb = torch.cat([z.repeat_interleave(W, dim=0), z[:G]])                 # (R + G, Z)
    state = model.initial_state(zb)
    out = torch.full((R + G, max_len), PAD_ID, dtype=torch.long, device=device)
    prev = torch.full((R + G,), BOS_ID, dtype=torch.long, device=device)
    score = torch.zeros(N, W, device=device)
    score[:, 1:] = float("-inf")                                            # all beams start as one
    g_score = torch.zeros(G, device=device)                                 # log p of the greedy rows
    done = torch.zeros(R + G, dtype=torch.bool, device=device)
    lengths = torch.zeros(R + G, device=device)
    parents = torch.arange(N, device=device).unsqueeze(1) * W               # (N, 1)
    if limits is not None:
        limits = torch.cat([limits.repeat_interleave(W), limits[:G]])       # (R + G,)
    block = RepeatBlock(no_repeat_ngram, out) if no_repeat_ngram else None
    for t in range(max_len):
        logits, stepped = model.step(zb, prev, state)
        logp = constrain(logits, out, t, repetition_penalty, block).log_softmax(-1)
        g_logp, g_tok = logp[R:].max(dim=-1)                                # greedy rows: the likeliest character
        g_score += g_logp.masked_fill(done[R:], 0.0)
        # a finished hypothesis can only be extended by padding, at no cost
        logp = torch.where(done[:R].unsqueeze(1), float("-inf"), logp[:R])
        logp[:, PAD_ID] = torch.where(done[:R], 0.0, float("-inf"))
        score, flat = (score.view(R, 1) + logp).view(N, W * V).topk(W, dim=1)   # (N, W)
        src = torch.cat([(flat // V + parents).view(-1), torch.arange(R, R + G, device=device)])
        tok = torch.cat([(flat % V).view(-1), g_tok.masked_fill(done[R:], PAD_ID)])
        state = _state_index(stepped, src, state)
        out = out[src]
        out[:, t] = tok
        if block is not None:
            block.index(src)
            block.after(out, t)
        lengths = lengths[src] + (~done[src]).float()
        done = done[src] | (tok == EOS_ID)
        if limits is not None:
            done |= limits <= t + 1
        prev = tok.masked_fill(tok == PAD_ID, EOS_ID)
        if bool(done.all()):
            break
    norm = (score.view(-1) / lengths[:R].clamp_min(1).pow(length_penalty)).view(N, W)
    result = out[norm.argmax(dim=1) + parents.squeeze(1)]
    if G:                                                                   # never worse than greedy
        take = g_score / lengths[R:].clamp_min(1).pow(length_penalty) > norm.max(dim=1).values + 1e-6
        result[take] = out[R:][take]
    return result


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
