"""Beam search and classifier-free guidance, on torch tensors.

Every function decodes a whole batch of codes at once, one time step per loop turn (never one item at a time); a
sequence stops at <eos> or at `max_len` characters. The loop of greedy and sampled decoding lives in `loop`, which
needs no torch; `engine.Decoder` chooses between them.
"""

from __future__ import annotations

import torch

from ..data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from ..model.vae import TextVAE
from .loop import RepeatBlock, constrain, mask_specials, state_index


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


@torch.no_grad()
def sequence_logprob(model: TextVAE, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids | z) for decoded rows (N, T) that end in <eos> (or are cut at T): (N,)."""
    from ..model.vae import decoder_inputs
    logits = model.decode_code(z, decoder_inputs(ids)).float()
    logp = mask_specials(logits.reshape(-1, logits.shape[-1])).log_softmax(-1).view_as(logits)
    picked = logp.gather(2, ids.unsqueeze(2)).squeeze(2)                   # (N, T)
    return picked.masked_fill(ids == PAD_ID, 0.0).sum(dim=1)


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
        state = state_index(stepped, src, state)
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
