"""The Python API: what the command line does, as methods of a loaded model.

    import textvae
    m = textvae.load("runs/words_en")
    m.generate(10, temperature=0.8, seed=1)
    m.interpolate("the food was great", "the service was slow", steps=5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import checkpoint
from .decode import decode_codes, lerp, slerp
from .model import TextVAE
from .tokenizer import CharTokenizer


class Model:
    """A trained textvae model with its vocabulary, ready to sample, encode and interpolate."""

    def __init__(self, model: TextVAE, tokenizer: CharTokenizer, extra: dict | None = None, path: Path | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.extra = extra or {}
        self.path = path

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def latent_dim(self) -> int:
        return self.model.config.latent_dim

    @property
    def default_max_len(self) -> int:
        """Longest item worth decoding: a little over the longest training item, if known."""
        longest = self.extra.get("longest_item")
        return int(longest) + 10 if longest else 128

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(seed)

    def unknown_chars(self, texts: Sequence[str]) -> set[str]:
        out: set[str] = set()
        for t in texts:
            out |= self.tokenizer.unknown_chars(t)
        return out

    @torch.no_grad()
    def encode(self, texts: Sequence[str], return_logvar: bool = False):
        """Posterior means (N, Z) of `texts` as a numpy array (and log-variances if asked)."""
        if isinstance(texts, str):
            texts = [texts]
        tokens, lengths = self.tokenizer.batch(list(texts))
        mu, logvar = self.model.encode(tokens.to(self.device), lengths.to(self.device))
        mu, logvar = mu.float().cpu().numpy(), logvar.float().cpu().numpy()
        return (mu, logvar) if return_logvar else mu

    @torch.no_grad()
    def decode(self, z, greedy: bool = True, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               max_len: int | None = None, seed: int | None = None, batch_size: int = 4096) -> list[str]:
        """Text for each code in z (N, Z)."""
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=self.device)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        gen = self._generator(seed)
        max_len = max_len or self.default_max_len
        texts = []
        for start in range(0, len(z), batch_size):
            ids = decode_codes(self.model, z[start:start + batch_size], max_len=max_len, greedy=greedy,
                               temperature=temperature, top_k=top_k, top_p=top_p, generator=gen)
            texts.extend(self.tokenizer.decode(row) for row in ids.tolist())
        return texts

    def sample_prior(self, n: int, seed: int | None = None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn((n, self.latent_dim), generator=gen)

    def generate(self, n: int, temperature: float = 1.0, greedy: bool = False, top_k: int = 0, top_p: float = 1.0,
                 max_len: int | None = None, seed: int | None = None) -> list[str]:
        """`n` new items: codes drawn from the prior N(0, I), then decoded."""
        z = self.sample_prior(n, seed)
        return self.decode(z, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
                           max_len=max_len, seed=None if seed is None else seed + 1)

    def reconstruct(self, texts: Sequence[str], max_len: int | None = None) -> list[str]:
        """Greedy decoding of each text's posterior mean."""
        return self.decode(self.encode(texts), greedy=True, max_len=max_len)

    def interpolate(self, a: str, b: str, steps: int = 5, method: str = "lerp", max_len: int | None = None) -> list[str]:
        """Homotopy (Bowman et al. 2016, section 5): decode `steps` points between the codes of a and b."""
        if steps < 2:
            raise ValueError("steps must be at least 2")
        mu = torch.as_tensor(self.encode([a, b]))
        path = (slerp if method == "slerp" else lerp)(mu[0], mu[1], steps)
        return self.decode(path, greedy=True, max_len=max_len)


def load(path, device: str = "cpu") -> Model:
    """Load a checkpoint file or run directory: `m = textvae.load("runs/words_en")`."""
    p = checkpoint.resolve(path)
    model, tokenizer, extra = checkpoint.load(p, device=device)
    return Model(model, tokenizer, extra, p)
