"""From codes to text: batched greedy and stochastic decoding, and homotopies between codes.

Every function decodes a whole batch of codes at once, one time step per loop turn
(never one item at a time); a sequence stops at <eos> or at `max_len` characters.
"""

from __future__ import annotations

import torch

from .model import TextVAE
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


@torch.no_grad()
def decode_codes(model: TextVAE, z: torch.Tensor, max_len: int = 64, greedy: bool = True,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Decode codes z (N, Z) into ids (N, max_len), padded with <pad> after each <eos>."""
    N = z.shape[0]
    device = z.device
    out = torch.full((N, max_len), PAD_ID, dtype=torch.long, device=device)
    prev = torch.full((N,), BOS_ID, dtype=torch.long, device=device)
    done = torch.zeros(N, dtype=torch.bool, device=device)
    state = model.initial_state(z)
    for t in range(max_len):
        logits, state = model.step(z, prev, state)       # (N, V)
        logits = logits.float()
        logits[:, PAD_ID] = float("-inf")               # never emit padding or <bos>
        logits[:, BOS_ID] = float("-inf")
        if greedy or temperature == 0:
            nxt = logits.argmax(dim=-1)
        else:
            probs = filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        nxt = nxt.masked_fill(done, PAD_ID)
        out[:, t] = nxt
        done |= nxt == EOS_ID
        if bool(done.all()):
            break
        prev = nxt
    return out


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
