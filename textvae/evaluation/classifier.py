"""A small judge for conditional generation: logistic regression on hashed character n-grams.

Each text becomes the bag of its character 1- to 4-grams (with boundary marks), hashed into a
fixed number of buckets; an EmbeddingBag holds one weight vector per bucket, so the model is
multinomial logistic regression on n-gram counts, trained with Adam in a few seconds.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def ngram_ids(text: str, buckets: int, n_max: int = 4) -> list[int]:
    padded = f"\x02{text}\x03"
    out = []
    for n in range(1, n_max + 1):
        for i in range(len(padded) - n + 1):
            out.append(zlib.crc32(padded[i:i + n].encode("utf-8", "surrogatepass")) % buckets)
    return out


@dataclass
class NgramClassifier:
    labels: list[str]
    weights: nn.EmbeddingBag
    bias: torch.Tensor
    buckets: int

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[str], buckets: int = 2**18, epochs: int = 8,
            lr: float = 0.05, batch_size: int = 256, seed: int = 0) -> NgramClassifier:
        names = sorted(set(labels))
        index = {name: i for i, name in enumerate(names)}
        y = torch.tensor([index[x] for x in labels])
        gen = torch.Generator().manual_seed(seed)
        bag = nn.EmbeddingBag(buckets, len(names), mode="mean")
        nn.init.zeros_(bag.weight)
        bias = torch.zeros(len(names), requires_grad=True)
        opt = torch.optim.Adam(list(bag.parameters()) + [bias], lr=lr)
        feats = [ngram_ids(t, buckets) for t in texts]
        # balance the classes: a judge that always answers the majority label would flatter nobody
        counts = torch.bincount(y, minlength=len(names)).float()
        class_weight = counts.sum() / (len(names) * counts.clamp_min(1))
        for _ in range(epochs):
            for batch in torch.randperm(len(texts), generator=gen).split(batch_size):
                flat, offsets = _pack([feats[i] for i in batch.tolist()])
                logits = bag(flat, offsets) + bias
                loss = nn.functional.cross_entropy(logits, y[batch], weight=class_weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return cls(names, bag, bias.detach(), buckets)

    @torch.no_grad()
    def predict(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        flat, offsets = _pack([ngram_ids(t, self.buckets) for t in texts])
        idx = (self.weights(flat, offsets) + self.bias).argmax(dim=1)
        return [self.labels[i] for i in idx.tolist()]

    def accuracy(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        pred = self.predict(texts)
        return float(np.mean([p == y for p, y in zip(pred, labels)])) if labels else 0.0


def _pack(features: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [max(len(f), 1) for f in features]
    offsets = torch.tensor([0] + list(np.cumsum(lengths)[:-1]))
    flat = torch.tensor([i for f in features for i in (f or [0])])
    return flat, offsets
