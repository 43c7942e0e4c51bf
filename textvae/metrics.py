"""How good a model is on held-out items: ELBO parts, per-character figures, active units,
and exact reconstruction from posterior means."""

from __future__ import annotations

import math

import numpy as np
import torch

from .data import EncodedItems
from .decode import decode_codes
from .model import TextVAE, decoder_inputs, reparameterize
from .objective import kl_divergence, reconstruction_nll
from .tokenizer import EOS_ID, PAD_ID


def _device_of(model: TextVAE) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def evaluate_elbo(model: TextVAE, data: EncodedItems, batch_size: int = 256, seed: int = 0,
                  autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Single-sample ELBO on `data`, per item and per character (each item's <eos> counts as one).

    Also the active units (Burda et al. 2016): dimensions whose posterior mean varies across
    items with variance above 0.01.
    """
    model.eval()
    device = _device_of(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    total_recon = total_kl = 0.0
    mus = []
    for _, tokens, lengths in data.iterate(batch_size):
        tokens, lengths = tokens.to(device), lengths.to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            mu, logvar = model.encode(tokens, lengths)
            z = mu if model.config.lm else reparameterize(mu, logvar, gen)
            logits = model.decode(z, decoder_inputs(tokens), lengths)
        total_recon += float(reconstruction_nll(logits, tokens).sum())
        total_kl += float(kl_divergence(mu.float(), logvar.float()).sum())
        mus.append(mu.float().cpu())
    n, chars = len(data), data.num_chars
    elbo = total_recon + total_kl
    mu_all = torch.cat(mus)
    active = int((mu_all.var(dim=0) > 0.01).sum()) if len(mu_all) > 1 and not model.config.lm else 0
    return {
        "recon": total_recon / n,
        "kl": total_kl / n,
        "nll_elbo": elbo / n,                       # -ELBO per item: an upper bound on -log p(x)
        "nats_per_char": elbo / chars,
        "bits_per_char": elbo / chars / math.log(2),
        "active_units": active,
        "items": n,
    }


@torch.no_grad()
def reconstruction_stats(model: TextVAE, data: EncodedItems, limit: int | None = 2000,
                         batch_size: int = 512, max_extra: int = 8) -> dict[str, float]:
    """Greedy decoding from posterior means: share of items reproduced exactly, and character accuracy."""
    model.eval()
    device = _device_of(model)
    n = len(data) if limit is None else min(limit, len(data))
    exact = 0
    correct = total = 0
    for start in range(0, n, batch_size):
        index = np.arange(start, min(start + batch_size, n))
        tokens, lengths = data.batch(index)
        tokens, lengths = tokens.to(device), lengths.to(device)
        mu, _ = model.encode(tokens, lengths)
        T = tokens.shape[1]
        out = decode_codes(model, mu, max_len=T + max_extra, greedy=True)[:, :T]
        valid = tokens != PAD_ID
        same = (out == tokens) | ~valid
        exact += int(same.all(dim=1).sum())
        correct += int(((out == tokens) & valid).sum())
        total += int(valid.sum())
    return {"exact": exact / max(n, 1), "char_accuracy": correct / max(total, 1), "recon_items": n}
