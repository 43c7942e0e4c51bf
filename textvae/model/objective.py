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

from ..data.tokenizer import BOS_ID, PAD_ID, UNK_ID
from ..settings import SCHEDULES


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
    hold_from: int | None = None  # from this step on, beta_max whatever the kind (the end of a planned budget)

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown KL schedule {self.kind!r}: use one of {', '.join(SCHEDULES)}")

    def __call__(self, step: int) -> float:
        w = max(self.warmup, 1)
        if self.kind == "constant" or (self.hold_from is not None and step >= self.hold_from):
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


def planned(schedule: KLSchedule, total_steps: int, share: float = 0.5) -> KLSchedule:
    """The schedule fitted to a budget of `total_steps`, so that beta reaches its final value in time: a
    warm-up takes at most `share` of the budget and beta holds at its maximum after it; cycles are
    stretched to fit a whole number into the budget, the last one ending at the maximum."""
    if schedule.kind == "constant":
        return schedule
    if schedule.kind == "cyclical":
        cycles = max(1, round(total_steps / max(schedule.warmup, 1)))
        period = max(1, math.ceil(total_steps / cycles))
        last_top = (cycles - 1) * period + math.ceil(schedule.cycles_ratio * period)
        return KLSchedule(schedule.kind, period, schedule.beta_max, schedule.cycles_ratio, hold_from=last_top)
    warmup = max(1, min(schedule.warmup, int(share * total_steps)))
    return KLSchedule(schedule.kind, warmup, schedule.beta_max, schedule.cycles_ratio, hold_from=warmup)


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


def elbo_terms(logits, targets, mu, logvar, beta: float, free_bits: float = 0.0,
               total_items: int | None = None, all_reduce=None, log_q: torch.Tensor | None = None,
               log_p: torch.Tensor | None = None, global_dim: int = 0) -> dict[str, torch.Tensor]:
    """The loss to minimise and its parts, per item.

    loss = recon + beta * KL', where KL' is the KL with each dimension's batch mean held at no
    less than `free_bits` nats (Kingma et al. 2016): a dimension below the threshold costs the
    constant `free_bits` and feels no pull. `kl` is the true KL, for reporting.

    Data-parallel training passes the global batch size `total_items` and an `all_reduce` (sum over
    processes, no gradient): the sums here are then this process's share of the global batch, the
    free-bits decision uses the global per-dimension KL, and the loss is scaled so that averaging
    the processes' gradients gives exactly the gradient of the whole batch.

    With a learned word prior (`log_q`, `log_p` of the word slots, per item; the global code's `global_dim`
    dimensions last in mu), the KL is that of the global code under N(0, I), with free bits, plus the slots'
    E log q(s|x) - log p(s|g); the prior's term enters the loss whole (its weight on the encoder, beta, was
    applied by the model: `TextVAE.forward`).
    """
    B = targets.shape[0]
    n = total_items or B
    recon_sum = reconstruction_nll(logits, targets).sum()
    slot_sum = None
    if log_q is not None:
        mu, logvar = mu[:, mu.shape[1] - global_dim:], logvar[:, logvar.shape[1] - global_dim:]
        slot_sum = torch.stack([log_q.float().sum(), -log_p.float().sum()])          # E log q, -log p
    kl_dim_sum = kl_divergence(mu.float(), logvar.float()).sum(dim=0)                 # (Z,)
    global_kl_dim = kl_dim_sum.detach().clone()
    global_recon = recon_sum.detach().clone()
    if all_reduce is not None:
        all_reduce(global_kl_dim)
        all_reduce(global_recon)
    global_kl_dim = global_kl_dim / n
    global_slots = None
    if slot_sum is not None:
        global_slots = slot_sum.detach().clone()
        if all_reduce is not None:
            all_reduce(global_slots)
        global_slots = global_slots / n
    if free_bits > 0:
        active = (global_kl_dim > free_bits).float()                                 # (Z,) dimensions above lambda
        kl_obj = (kl_dim_sum * active).sum() / n + (free_bits * (1 - active)).sum()
        kl_obj_global = (global_kl_dim * active).sum() + (free_bits * (1 - active)).sum()
    else:
        kl_obj = kl_dim_sum.sum() / n
        kl_obj_global = global_kl_dim.sum()
    # `loss` is this process's share (times the number of processes, the trainer's business);
    # `objective` is the whole batch's value, for reporting.
    if slot_sum is not None:
        loss = recon_sum / n + beta * (kl_obj + slot_sum[0] / n) + slot_sum[1] / n
        slot_kl = global_slots.sum()
        return {"loss": loss, "objective": global_recon / n + beta * (kl_obj_global + slot_kl),
                "recon": global_recon / n, "kl": global_kl_dim.sum() + slot_kl, "kl_global": global_kl_dim.sum(),
                "prior_nll": global_slots[1]}
    return {"loss": recon_sum / n + beta * kl_obj, "objective": global_recon / n + beta * kl_obj_global,
            "recon": global_recon / n, "kl": global_kl_dim.sum()}
