"""The training objective: reconstruction + beta(step) * KL, and the tricks that keep z in use.

- KL(q(z|x) || N(0, I)) in closed form (Kingma & Welling 2014, appendix B).
- KL annealing: linear, logistic (Bowman et al. 2016) and cyclical (Fu et al. 2019).
- Character dropout on the decoder input (Bowman et al. 2016, "word dropout").
- Free bits (Kingma et al. 2016): no pressure on a latent dimension while its KL is below lambda.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .tokenizer import BOS_ID, PAD_ID, UNK_ID

SCHEDULES = ("constant", "linear", "logistic", "cyclical")


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per dimension: (B, Z)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


@dataclass(frozen=True)
class KLSchedule:
    """beta as a function of the training step."""
    kind: str = "linear"    # constant | linear | logistic | cyclical
    warmup: int = 2000      # steps to reach beta_max (linear, logistic); steps per cycle (cyclical)
    beta_max: float = 1.0   # the weight the KL term reaches
    cycles_ratio: float = 0.5  # cyclical: share of a cycle spent rising (Fu et al. 2019 use 0.5)

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown KL schedule {self.kind!r}: use one of {', '.join(SCHEDULES)}")

    def __call__(self, step: int) -> float:
        w = max(self.warmup, 1)
        if self.kind == "constant":
            frac = 1.0
        elif self.kind == "linear":
            frac = min(step / w, 1.0)
        elif self.kind == "logistic":
            # Bowman et al.: 1 / (1 + exp(-k (step - x0))), centred mid-warmup
            k = 10.0 / w
            frac = 1.0 / (1.0 + math.exp(-k * (step - w / 2)))
        else:  # cyclical: rise linearly for cycles_ratio of each cycle, then hold
            pos = (step % w) / w
            frac = min(pos / max(self.cycles_ratio, 1e-8), 1.0)
        return self.beta_max * frac


def character_dropout(inputs: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace decoder input characters by <unk> with probability p (never <bos> or padding)."""
    if p <= 0:
        return inputs
    u = torch.rand(inputs.shape, generator=generator, device=inputs.device)
    drop = (u < p) & (inputs != PAD_ID) & (inputs != BOS_ID)
    return inputs.masked_fill(drop, UNK_ID)


def reconstruction_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per item: cross-entropy summed over each item's characters and <eos>: (B,)."""
    B, T, V = logits.shape
    nll = F.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T),
                          ignore_index=PAD_ID, reduction="none")
    return nll.view(B, T).sum(dim=1)


def elbo_terms(logits, targets, mu, logvar, beta: float, free_bits: float = 0.0) -> dict[str, torch.Tensor]:
    """The loss to minimise and its parts, averaged over the batch (per item).

    loss = recon + beta * KL', where KL' is the KL with each dimension's batch mean held at no
    less than `free_bits` nats (Kingma et al. 2016). `kl` is the true KL, for reporting.
    """
    recon = reconstruction_nll(logits, targets).mean()
    kl_dim = kl_divergence(mu.float(), logvar.float()).mean(dim=0)          # (Z,)
    kl = kl_dim.sum()
    kl_obj = torch.clamp(kl_dim, min=free_bits).sum() if free_bits > 0 else kl
    return {"loss": recon + beta * kl_obj, "recon": recon, "kl": kl}
