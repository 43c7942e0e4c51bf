"""The slot prior of earlier checkpoints in numpy: draws of codes of word slots from a bigram model over clusters
of the training codes' word slots (`TextVAE.fit_slot_prior`).

The model's own draws (`TextVAE.prior_sample`) and the CPU's numpy decoder (`decoding.arraystep.ArraySteps`) both
call these functions, so the same noise gives the same codes; this module imports no torch.
"""

from __future__ import annotations

import math

import numpy as np


def pick(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn from each row of non-negative `weights` (N, C) by inverse CDF with uniforms u (N,): the number
    of the cumulative weights below u times their total (summed in double precision, kept in single)."""
    cdf = np.cumsum(weights, axis=1, dtype=np.float64).astype(np.float32)
    return np.minimum((cdf < (u * cdf[:, -1])[:, None]).sum(axis=1), weights.shape[1] - 1)


_erfc = np.frompyfunc(math.erfc, 1, 1)


def ndtr(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF of each of x, in single precision (computed in double)."""
    return (0.5 * _erfc(x.astype(np.float64) * -math.sqrt(0.5)).astype(np.float64)).astype(np.float32)


def chain_ends(trans: np.ndarray, slots: int) -> np.ndarray:
    """(K + 1, C + 1) from a slot prior's transitions (C + 1, C + 1): row j, in proportion for each cluster (and
    the start), the chance that a chain from it ends after exactly j more words."""
    trans = trans.astype(np.float32)
    C = trans.shape[0] - 1
    ends = [trans[:, C]]
    for _ in range(slots):
        nxt = trans[:, :C] @ ends[-1][:C]
        ends.append(nxt / max(float(nxt.max()), 1e-30))                  # only ratios matter within a j
    return np.stack(ends)


def slot_prior_codes(eps: np.ndarray, words_share: np.ndarray, trans: np.ndarray, ends: np.ndarray,
                     sizes: np.ndarray, bank: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Codes (N, Z) from a fitted slot prior (`TextVAE.fit_slot_prior`): a number of words n from the corpus's
    shares `words_share` (K + 1,), then a chain of clusters of exactly n words from the bigram model `trans`
    (conditioned on ending there, by `ends` from `chain_ends`), and for each a member's code from `bank`
    (C, members, d) of `sizes` (C,); slots after the last word hold the code `empty` (d,). Uniforms come from
    eps (Phi(eps)): the same eps, the same codes."""
    n, K, C = eps.shape[0], len(words_share) - 1, trans.shape[0] - 1
    u = ndtr(eps[:, :2 * K + 1])                                           # (N, 2K + 1) uniforms
    trans = trans.astype(np.float32)
    words = pick(np.broadcast_to(words_share.astype(np.float32), (n, K + 1)), u[:, 0])    # (N,), >= 1
    clusters, members = np.zeros((n, K), dtype=np.int64), np.zeros((n, K), dtype=np.int64)
    prev = np.full(n, C)
    for k in range(min(K, int(words.max()))):
        live = k < words
        w = trans[prev, :C] * ends[np.maximum(words - k - 1, 0), :C]
        w = np.where(w.sum(axis=1, keepdims=True) > 0, w, trans[prev, :C] + np.float32(1e-12))
        cluster = pick(w, u[:, 1 + 2 * k])
        size = np.maximum(sizes[cluster], 1)
        member = np.minimum((u[:, 2 + 2 * k] * size.astype(np.float32)).astype(np.int64), size - 1)
        clusters[:, k], members[:, k] = cluster, member
        prev = np.where(live, cluster, prev)
    live = np.arange(K) < words[:, None]                                    # (N, K)
    z = np.where(live[:, :, None], bank[clusters, members].astype(np.float32), empty.astype(np.float32))
    return z.reshape(n, -1).astype(eps.dtype)
