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
from .decode import beam_search, decode_codes, lerp, slerp
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
    def encode(self, texts: Sequence[str], return_logvar: bool = False, batch_size: int = 512):
        """Posterior means (N, Z) of `texts`, in input order, as a numpy array (and log-variances if asked)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        mus = np.zeros((len(texts), self.latent_dim), dtype=np.float32)
        logvars = np.zeros_like(mus)
        order = np.argsort([len(t) for t in texts], kind="stable")      # similar lengths together: little padding
        for start in range(0, len(texts), batch_size):
            index = order[start:start + batch_size]
            tokens, lengths = self.tokenizer.batch([texts[i] for i in index])
            mu, logvar = self.model.encode(tokens.to(self.device), lengths.to(self.device))
            mus[index] = mu.float().cpu().numpy()
            logvars[index] = logvar.float().cpu().numpy()
        return (mus, logvars) if return_logvar else mus

    @torch.no_grad()
    def decode(self, z, strategy: str = "greedy", temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               beam: int = 5, length_penalty: float = 1.0, repetition_penalty: float = 1.0,
               max_len: int | None = None, seed: int | None = None, batch_size: int = 4096,
               greedy: bool | None = None) -> list[str]:
        """Text for each code in z (N, Z).

        strategy: "greedy" (most likely character each step), "sample" (temperature, top-k, top-p) or
        "beam" (beam search, `beam` wide, ranked by log-probability / length^length_penalty).
        """
        if greedy is not None:                       # shorthand: greedy=False means sample
            strategy = "greedy" if greedy else "sample"
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        if strategy == "sample" and temperature == 0:
            strategy = "greedy"
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=self.device)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        gen = self._generator(seed)
        max_len = max_len or self.default_max_len
        if strategy == "beam":
            batch_size = max(1, batch_size // max(beam, 1))
        texts = []
        for start in range(0, len(z), batch_size):
            chunk = z[start:start + batch_size]
            if strategy == "beam":
                ids = beam_search(self.model, chunk, beam=beam, max_len=max_len, length_penalty=length_penalty,
                                  repetition_penalty=repetition_penalty)
            else:
                ids = decode_codes(self.model, chunk, max_len=max_len, greedy=strategy == "greedy",
                                   temperature=temperature, top_k=top_k, top_p=top_p,
                                   repetition_penalty=repetition_penalty, generator=gen)
            texts.extend(self.tokenizer.decode(row) for row in ids.tolist())
        return texts

    def sample_prior(self, n: int, seed: int | None = None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn((n, self.latent_dim), generator=gen)

    def sample_near(self, text: str, n: int, radius: float = 1.0, seed: int | None = None) -> torch.Tensor:
        """n codes around `text`'s posterior: mu + radius * sigma * eps."""
        mu, logvar = self.encode([text], return_logvar=True)
        eps = self.sample_prior(n, seed)
        return torch.as_tensor(mu) + radius * torch.exp(0.5 * torch.as_tensor(logvar)) * eps

    def generate(self, n: int, strategy: str = "sample", temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, beam: int = 5, length_penalty: float = 1.0, repetition_penalty: float = 1.0,
                 max_len: int | None = None, seed: int | None = None, near: str | None = None,
                 radius: float = 1.0, greedy: bool | None = None) -> list[str]:
        """`n` new items: codes drawn from the prior N(0, I) (or around `near`'s posterior), then decoded."""
        z = self.sample_near(near, n, radius, seed) if near is not None else self.sample_prior(n, seed)
        return self.decode(z, strategy=strategy, temperature=temperature, top_k=top_k, top_p=top_p, beam=beam,
                           length_penalty=length_penalty, repetition_penalty=repetition_penalty, max_len=max_len,
                           seed=None if seed is None else seed + 1, greedy=greedy)

    def reconstruct(self, texts: Sequence[str], max_len: int | None = None, **decoding) -> list[str]:
        """Decode each text's posterior mean (greedily unless told otherwise)."""
        return self.decode(self.encode(texts), max_len=max_len, **decoding)

    def analogy(self, a: str, b: str, c: str, **decoding) -> str:
        """Latent arithmetic: decode z_b - z_a + z_c ("a is to b as c is to ?")."""
        mu = self.encode([a, b, c])
        return self.decode(mu[1] - mu[0] + mu[2], **decoding)[0]

    def interpolate(self, a, b, steps: int = 5, method: str = "lerp", max_len: int | None = None,
                    unique: bool = False, **decoding) -> list[str]:
        """Homotopy (Bowman et al. 2016, section 5): decode `steps` points between two codes.

        a, b: texts (their posterior means are used) or codes. `unique` drops a step identical to the one
        before it."""
        if steps < 2:
            raise ValueError("steps must be at least 2")
        za, zb = (torch.as_tensor(self.encode([x])[0]) if isinstance(x, str) else torch.as_tensor(np.asarray(x)).float()
                  for x in (a, b))
        path = (slerp if method == "slerp" else lerp)(za, zb, steps)
        texts = self.decode(path, max_len=max_len, **decoding)
        if unique:
            texts = [t for i, t in enumerate(texts) if i == 0 or t != texts[i - 1]]
        return texts


STRATEGIES = ("greedy", "sample", "beam")


def load(path, device: str = "cpu") -> Model:
    """Load a checkpoint file or run directory: `m = textvae.load("runs/words_en")`."""
    p = checkpoint.resolve(path)
    model, tokenizer, extra = checkpoint.load(p, device=device)
    return Model(model, tokenizer, extra, p)
