"""How good a model is on held-out items: ELBO parts, per-character figures, active units,
and exact reconstruction from posterior means."""

from __future__ import annotations

import difflib
import math

import numpy as np
import torch

from ..data.items import EncodedItems
from ..data.tokenizer import PAD_ID
from ..data.words import WordSet
from ..decoding.loop import decode_codes
from ..model.objective import kl_divergence, reconstruction_nll
from ..model.vae import TextVAE, decoder_inputs, reparameterize


def _device_of(model: TextVAE) -> torch.device:
    return next(model.parameters()).device


def _labels(data: EncodedItems, index, device) -> torch.Tensor | None:
    y = data.labels_of(index)
    return None if y is None else y.to(device)


@torch.no_grad()
def evaluate_elbo(model: TextVAE, data: EncodedItems, batch_size: int = 256, seed: int = 0,
                  autocast_dtype: torch.dtype | None = None, free_bits: float = 0.0) -> dict[str, float]:
    """Single-sample ELBO on `data`, per item and per character (each item's <eos> counts as one), and the
    training objective per item (`objective`: with free bits, each dimension's mean KL counts as at least
    `free_bits`)."""
    model.eval()
    device = _device_of(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    total_recon = total_kl = 0.0
    kl_dims = None
    G = model.config.global_dim if model.config.word_prior else 0
    for index, tokens, lengths in data.iterate(batch_size):
        tokens, lengths = tokens.to(device), lengths.to(device)
        y = _labels(data, index, device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            if G:                           # the KL of the slots under the word prior, by one sample
                out = model(tokens, lengths, generator=gen)
                mu, logvar, logits = out.mu[:, -G:], out.logvar[:, -G:], out.logits
                total_kl += float((out.log_q - out.log_p).sum())
            else:
                mu, logvar = model.encode(tokens, lengths, y)
                z = mu if model.config.lm else reparameterize(mu, logvar, gen)
                logits = model.decode(z, decoder_inputs(tokens), lengths, y)
        total_recon += float(reconstruction_nll(logits, tokens).sum())
        kl = kl_divergence(mu.float(), logvar.float())
        total_kl += float(kl.sum())
        kl_dims = kl.sum(dim=0).double() + (0 if kl_dims is None else kl_dims)
    n, chars = len(data), data.num_chars
    elbo = total_recon + total_kl
    kept = total_kl / n
    if kl_dims is not None and free_bits > 0:       # the dimensions under N(0, I) count at least the free bits
        kept += float(kl_dims.div(n).clamp_min(free_bits).sum() - kl_dims.div(n).sum())
    return {
        "objective": total_recon / n + kept,
        "recon": total_recon / n,
        "kl": total_kl / n,
        "nll_elbo": elbo / n,                       # -ELBO per item: an upper bound on -log p(x)
        "nats_per_char": elbo / chars,
        "bits_per_char": elbo / chars / math.log(2),
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
        y = _labels(data, index, device)
        mu, _ = model.encode(tokens, lengths, y)
        T = tokens.shape[1]
        out = decode_codes(model, model.condition(mu, y), max_len=T + max_extra, greedy=True)[:, :T]
        valid = tokens != PAD_ID
        same = (out == tokens) | ~valid
        exact += int(same.all(dim=1).sum())
        correct += int(((out == tokens) & valid).sum())
        total += int(valid.sum())
    return {"exact": exact / max(n, 1), "char_accuracy": correct / max(total, 1), "recon_items": n}


LOG_2PI = math.log(2 * math.pi)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


def _log_weights(model: TextVAE, z: torch.Tensor, eps: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                 words: torch.Tensor | None, log_px_z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The importance weights log p(x|z) + log p(z) - log q(z|x) of samples z (k, B, Z) drawn with noise eps, and
    under a word prior (`words`: each item's word count) the first sample's KL, log q - log p (else None)."""
    if model.config.lm:
        return log_px_z, None
    if words is not None:
        k, B = log_px_z.shape
        drawn = model.random_dims(words)
        log_pz = model.log_prior(z.reshape(k * B, -1), words.repeat(k)).view(k, B)
        log_qz = (-0.5 * (LOG_2PI + logvar + eps.pow(2)) * drawn).sum(dim=-1)
        return log_px_z + log_pz - log_qz, (log_qz - log_pz)[0]
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))     # (k, B)
    log_qz = log_normal(z, mu.unsqueeze(0), logvar.unsqueeze(0))
    return log_px_z + log_pz - log_qz, None


@torch.no_grad()
def iw_nll(model: TextVAE, data: EncodedItems, samples: int = 100, batch_size: int = 64, chunk: int = 10,
           seed: int = 0, autocast_dtype: torch.dtype | None = None, progress=None) -> dict[str, float]:
    """Importance-weighted bound on -log p(x) (Burda et al. 2016), with the single-sample ELBO beside it.

    -log p(x) <= -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x).
    With K=1 it is the ELBO's sample estimate; it tightens as K grows. The K samples of a batch are
    decoded `chunk` at a time as one large batch. A language model (no z) gets its exact NLL.
    `progress(n)` is called with the number of items done after every batch.
    """
    model.eval()
    device = _device_of(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    K = 1 if model.config.lm else samples
    total_iw = total_elbo = total_recon = total_kl = 0.0
    for index, tokens, lengths in data.iterate(batch_size):
        tokens, lengths = tokens.to(device), lengths.to(device)
        y = _labels(data, index, device)
        B = tokens.shape[0]
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            mu, logvar = model.encode(tokens, lengths, y)
        mu, logvar = mu.float(), logvar.float()
        inputs = decoder_inputs(tokens)
        log_w = []
        words = model.word_count(tokens, lengths) if model.config.word_prior else None
        for start in range(0, K, chunk):
            k = min(chunk, K - start)
            eps = torch.randn((k, B, mu.shape[1]), generator=gen, device=device)
            if words is not None:           # a word-prior model's empty slots are fixed, not drawn
                eps = eps * model.random_dims(words)
            z = mu if model.config.lm else reparameterize(mu, logvar, eps=eps)       # (k, B, Z)
            z = z.expand(k, B, -1) if model.config.lm else z
            flat_z = z.reshape(k * B, -1)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model.decode(flat_z, inputs.repeat(k, 1), lengths.repeat(k),
                                      None if y is None else y.repeat(k))
            log_px_z = -reconstruction_nll(logits, tokens.repeat(k, 1)).view(k, B)
            weights, kl = _log_weights(model, z, eps, mu, logvar, words, log_px_z)
            log_w.append(weights)
            if start == 0:
                first_kl = kl
                total_recon += float(-log_px_z[0].sum())
        log_w = torch.cat(log_w)                                                     # (K, B)
        total_iw += float(-(torch.logsumexp(log_w, dim=0) - math.log(K)).sum())
        if words is not None:               # the ELBO's KL: that of the first sample
            kl = first_kl
        else:
            kl = kl_divergence(mu, logvar).sum(dim=1)
        total_kl += float(kl.sum())
        if progress is not None:
            progress(B)
    n, chars = len(data), data.num_chars
    total_elbo = total_recon + total_kl
    return {
        "iw_nll": total_iw / n, "iw_nats_per_char": total_iw / chars, "iw_bits_per_char": total_iw / chars / math.log(2),
        "perplexity": math.exp(total_iw / chars),
        "nll_elbo": total_elbo / n, "elbo_nats_per_char": total_elbo / chars,
        "recon": total_recon / n, "kl": total_kl / n, "samples": K, "items": n, "chars": chars,
    }


MI_BUDGET = 200_000_000     # the mutual information's pairs of (sample, item) x dimensions: at most this many


@torch.no_grad()
def posterior_stats(model: TextVAE, data: EncodedItems, batch_size: int = 256, seed: int = 0,
                    max_items: int = 5000) -> dict[str, float]:
    """Does the model use its code? Mutual information I(x; z) under q and active units.

    MI = E_x E_q(z|x)[log q(z|x)] - E_q(z)[log q(z)], with the aggregate posterior q(z) taken as the
    mixture of the items' posteriors (Hoffman & Johnson 2016; estimator of He et al. 2019).
    AU counts dimensions whose posterior mean has variance above 0.01 across items (Burda et al. 2016).
    Its cost grows with items^2 x dimensions: a large code is estimated on fewer items (MI_BUDGET).
    """
    model.eval()
    device = _device_of(model)
    Z = model.config.latent_dim
    n = min(len(data), max_items, max(2, int(math.sqrt(MI_BUDGET / max(Z, 1)))))   # n^2 Z within the budget
    if model.config.lm or n < 2:                       # no code, or too few items to estimate q(z)
        return {"mi": 0.0, "active_units": 0}
    mus, logvars = [], []
    for start in range(0, n, batch_size):
        index = np.arange(start, min(start + batch_size, n))
        tokens, lengths = data.batch(index)
        mu, logvar = model.encode(tokens.to(device), lengths.to(device), _labels(data, index, device))
        mus.append(mu.float())
        logvars.append(logvar.float())
    mu, logvar = torch.cat(mus), torch.cat(logvars)                                 # (N, Z)
    gen = torch.Generator(device=device).manual_seed(seed)
    mc = max(1, min(10, 20_000 // n, MI_BUDGET // (n * n * Z)))                     # samples per item: less noise
    eps = torch.randn((mc, *mu.shape), generator=gen, device=device)
    z = reparameterize(mu, logvar, eps=eps).view(-1, mu.shape[1])
    neg_entropy = (-0.5 * Z * LOG_2PI - 0.5 * (1 + logvar).sum(dim=1)).mean()       # E log q(z|x), in closed form
    log_qz = []
    for start in range(0, len(z), 256):                                             # log q(z_i) = lse_j log q(z_i|x_j) - log N
        zi = z[start:start + 256].unsqueeze(1)                                       # (b, 1, Z)
        log_qz.append(torch.logsumexp(log_normal(zi, mu.unsqueeze(0), logvar.unsqueeze(0)), dim=1) - math.log(n))
    mi = float(neg_entropy - torch.cat(log_qz).mean())
    active = int((mu.var(dim=0) > 0.01).sum())
    return {"mi": mi, "active_units": active}


def principal_plane(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PCA of the rows of x (N, Z): their mean (Z,), the first two principal directions (2, Z), orthonormal,
    each row's coordinates on that plane (N, 2), and the share of the variance along each direction (2,)."""
    origin = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - origin, full_matrices=False)
    axes = np.zeros((2, x.shape[1]), dtype=x.dtype)
    axes[:len(vt[:2])] = vt[:2]                                       # a 1-D space has one direction
    var = np.zeros(2)
    var[:len(s[:2])] = s[:2] ** 2 / max(float((s ** 2).sum()), 1e-12)
    return origin, axes, (x - origin) @ axes.T, var


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, by the usual dynamic programme over one row (a row at a time in numpy: the
    insertions along a row are a running minimum of row[j] - j, plus j)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    cb = np.frombuffer(b.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    j = np.arange(len(b) + 1)
    prev = j.copy()
    points = np.frombuffer(a.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    for i, ca in enumerate(points, 1):
        cur = np.empty_like(prev)
        cur[0] = i
        cur[1:] = np.minimum(prev[1:] + 1, prev[:-1] + (cb != ca))            # deletion, substitution
        prev = np.minimum.accumulate(cur - j) + j                               # insertion
    return int(prev[-1])


def char_accuracy(original: str, decoded: str) -> float:
    """1 - edit distance / length of the original, at least 0: how much of a text came back."""
    return max(0.0, 1.0 - edit_distance(original, decoded) / max(len(original), 1))


def reconstruction_report(originals: list[str], reconstructions: list[str]) -> dict[str, float]:
    """Exact-match rate, character accuracy (mean of 1 - edit distance / length) and mean edit distance."""
    n = max(len(originals), 1)
    exact = sum(a == b for a, b in zip(originals, reconstructions))
    dist = [edit_distance(a, b) for a, b in zip(originals, reconstructions)]
    acc = sum(max(0.0, 1 - d / max(len(a), 1)) for d, a in zip(dist, originals))
    return {"exact": exact / n, "char_accuracy": acc / n, "edit_distance": sum(dist) / n}


def sample_report(samples: list[str], training_items) -> dict[str, float]:
    """Are samples new? Share copied from training, distinct character 1/2-grams, duplicates."""
    train_set = training_items if isinstance(training_items, (set, frozenset)) else set(training_items)
    n = max(len(samples), 1)
    copies = sum(s in train_set for s in samples)
    grams1 = [c for s in samples for c in s]
    grams2 = [s[i:i + 2] for s in samples for i in range(len(s) - 1)]
    return {
        "samples": len(samples),
        "copied": copies / n, "new": 1 - copies / n,
        "distinct_1": len(set(grams1)) / max(len(grams1), 1),
        "distinct_2": len(set(grams2)) / max(len(grams2), 1),
        "duplicates": 1 - len(set(samples)) / n,
        "mean_length": sum(map(len, samples)) / n,
    }


# -- what a user sees in sentences: real words, runaway decodings, interpolation paths ------------------------

def real_word_rate(texts: list[str], words) -> float:
    """Share of the whitespace words of `texts` found among `words` (a WordSet or a set)."""
    found = [w for t in texts for w in t.split()]
    if not found:
        return 0.0
    hits = words.contains(found).sum() if isinstance(words, WordSet) else sum(w in words for w in found)
    return float(hits) / len(found)


def is_runaway(text: str, max_len: int, n: int = 3, times: int = 3) -> bool:
    """A decoding that ran away: it reached the length limit, or repeats a sequence of `n` words `times` times."""
    if len(text) >= max_len:
        return True
    words = text.split()
    seen: dict[tuple, int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        seen[gram] = seen.get(gram, 0) + 1
        if seen[gram] >= times:
            return True
    return False


def changed_spans(before: str, after: str) -> list[tuple[str, bool]]:
    """`after` cut into (text, changed) pieces, relative to `before` (insertions and replacements)."""
    pieces: list[tuple[str, bool]] = []
    for op, _, _, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if j2 > j1:
            pieces.append((after[j1:j2], op != "equal"))
    return pieces
