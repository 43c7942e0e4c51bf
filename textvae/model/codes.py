"""The priors over a model's codes, as a part of `vae.TextVAE`: draws from N(0, I), from a Gaussian fitted to the
training codes, from the slot prior of earlier checkpoints (a bigram model over clusters of word slots) or from the
word prior learned with the model (`prior.WordPrior`, its components the words' own posteriors); the prior's log
density, and the paths' places in its noise space."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.tokenizer import EOS_ID, PAD_ID
from .prior import END, FIRST_WORD, OTHER, word_hashes
from .slotprior import chain_ends, slot_prior_codes

LOG_2PI = math.log(2 * math.pi)
SLOT_BANK = 32          # codes kept per cluster of word slots, for the slot prior (`fit_slot_prior`)


def _nearest(x: torch.Tensor, centres: torch.Tensor, chunk: int = 65_536) -> torch.Tensor:
    """Index of the nearest centre of each row of x."""
    return torch.cat([torch.cdist(x[i:i + chunk], centres).argmin(dim=1) for i in range(0, len(x), chunk)])


class Priors:
    """The prior half of `TextVAE` (a mixin: it reads the module's config, buffers and word prior)."""

    def prior_sample(self, eps: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
        """Codes from standard normal noise eps (N, Z): eps itself under N(0, I), else mean + scale @ eps, or
        with a fitted slot prior or a word prior, its codes drawn with eps as the source of randomness (a word
        prior's choice of words sharpened by `temperature` and `top_p`)."""
        if self.config.word_prior:
            g = eps[:, self.config.latent_dim - self.config.global_dim:]
            return self.codes_given(g, eps, temperature, top_p)
        if hasattr(self, "slot_words") and float(self.slot_words.sum()) > 0:
            return self._slot_prior_sample(eps)
        if not hasattr(self, "prior_mean"):
            return eps
        return self.prior_mean.to(eps) + eps @ self.prior_scale.to(eps).T

    def _spelled(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's posterior (mean, log-variance: (U, d) each) of each of the word prior's vocabulary words
        `words` (U,) (their ranks), written alone: the Gaussian components of the word prior."""
        spellings = self.word_prior.spellings[words]                                     # (U, L)
        n = (spellings != PAD_ID).sum(dim=1)
        L = int(n.max()) + 1 if len(n) else 1
        padded = F.pad(spellings, (0, max(0, L - spellings.shape[1])))[:, :L]
        tokens = torch.where(torch.arange(L, device=n.device).unsqueeze(0) == n.unsqueeze(1), EOS_ID, padded)
        return self._word_posteriors(tokens, n + 1)

    def components(self, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussians (means and log-variances, (*classes.shape, d)) of the word prior's `classes` (END's: zeros),
        differentiable: each vocabulary word of them encoded once."""
        wp, d = self.word_prior, self.config.slot_dim
        flat = classes.reshape(-1)
        found, index = flat.unique(return_inverse=True)
        means = found.new_zeros((len(found), d), dtype=wp.other_mean.dtype).float()
        logvars = torch.zeros_like(means)
        word = found >= FIRST_WORD
        if bool(word.any()):
            mu, logvar = self._spelled(found[word] - FIRST_WORD)
            means, logvars = means.index_put((word.nonzero()[:, 0],), mu.float()), \
                logvars.index_put((word.nonzero()[:, 0],), logvar.float())
        other = (found == OTHER).unsqueeze(1)
        means = torch.where(other, wp.other_mean.float(), means)
        logvars = torch.where(other, wp.other_logvar.float(), logvars)
        return means[index].view(*classes.shape, d), logvars[index].view(*classes.shape, d)

    @torch.no_grad()
    def component_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every component of the word prior, (C, d) means and log-variances (row END: zeros), kept until a weight
        changes."""
        key = tuple((p.data_ptr(), p._version, p.device) for p in self.parameters())
        kept = self.__dict__.get("_kept_components")
        if kept is not None and kept[0] == key:
            return kept[1]
        was = self.training
        self.eval()
        classes = torch.arange(self.word_prior.classes, device=self.word_prior.hashes.device)
        parts = [self.components(classes[i:i + 4096]) for i in range(0, len(classes), 4096)]
        self.train(was)
        table = (torch.cat([m for m, _ in parts]), torch.cat([v for _, v in parts]))
        self.__dict__["_kept_components"] = (key, table)
        return table

    def codes_given(self, g: torch.Tensor, eps: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0,
                    uniforms: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                    finals: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (N, Z) of a word prior's slots drawn given global codes g (N, G), the noise eps (N, Z) their
        source of randomness: slot i's word by the uniform Phi(eps[:, i d]) (or `uniforms` (N, K), when given), an
        OTHER slot's place by eps[:, i d: (i + 1) d], closing near target `lengths` (N,) in words when given, on
        one of the words `finals` (C,) (`prior.WordPrior.sample`)."""
        c = self.config
        K, d = c.slots, c.slot_dim
        noise = eps[:, :K * d].reshape(-1, K, d).float()
        if uniforms is None:
            uniforms = 0.5 * (1 + torch.erf(noise[:, :, 0] / math.sqrt(2)))
        means, logvars = self.component_table()
        s, _ = self.word_prior.sample(g.float(), uniforms.float(), noise, self._empty_slot().float(), means, logvars,
                                      temperature, top_p, lengths=lengths, finals=finals)
        return torch.cat([s.reshape(len(g), -1), g.float()], dim=1).to(eps.dtype)

    @torch.no_grad()
    def places(self, z: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The uniforms (N, K) with which the word prior, from the global codes of z (N, Z), draws z's words (each
        slot read as its nearest component): the codes' points in the prior's noise space (`codes_given`); and
        the codes' words (N,)."""
        c = self.config
        s, g = self._slots(z).float(), z[:, c.latent_dim - c.global_dim:].float()
        means, logvars = self.component_table()
        classes = self.word_prior.nearest(s, means, logvars)
        words = self._pieces_held(s).clamp(min=1)
        classes = classes.masked_fill(torch.arange(c.slots, device=z.device).unsqueeze(0) >= words.unsqueeze(1), END)
        _, u = self.word_prior.sample(g, torch.zeros_like(classes, dtype=torch.float), s, self._empty_slot().float(),
                                      means, logvars, temperature, top_p, forced=classes, forced_slots=s)
        return u, words

    def word_count(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The words (B,) of each item, as the code's slots count them (at least 1, at most `slots`)."""
        return word_hashes(tokens, lengths, self.config.slot_break, self.config.slots)[1]

    def random_dims(self, words: torch.Tensor) -> torch.Tensor:
        """(B, Z) which dimensions of a word-prior model's code are random under q(z|x): the slots of the items'
        `words` (B,) words and the global code; a slot past an item's last word is its fixed empty code."""
        c = self.config
        slot = torch.arange(c.slots, device=words.device).repeat_interleave(c.slot_dim)
        used = slot.unsqueeze(0) < words.unsqueeze(1)
        return torch.cat([used, used.new_ones((len(words), c.global_dim))], dim=1)

    def log_prior(self, z: torch.Tensor, words: torch.Tensor, classes: torch.Tensor | None = None,
                  dropout: float = 0.0, with_global: bool = True) -> torch.Tensor:
        """log p(z) (B,) of codes z (B, Z) of items of `words` words under the word prior: N(g; 0, I) times the
        slots' bound (`prior.WordPrior.log_prob`; `classes` the words' own, in training, else each slot's nearest)."""
        c = self.config
        g = z[:, c.latent_dim - c.global_dim:].float()
        log_g = -0.5 * (LOG_2PI + g.pow(2)).sum(dim=1) if with_global else 0.0
        s = self._slots(z)
        if classes is None:
            table = self.component_table()
            classes = self.word_prior.nearest(s.float(), *table)
            means, logvars = table[0][classes], table[1][classes]
        else:
            means, logvars = self.components(classes)
        return log_g + self.word_prior.log_prob(s, words, g, classes, means, logvars, dropout)

    def _empty_slot(self) -> torch.Tensor:
        """The code of a slot past an item's last word: the posterior mean of an empty summary."""
        return self.to_posterior.bias[:self.config.slot_dim].detach()

    def _slot_prior_sample(self, eps: torch.Tensor) -> torch.Tensor:
        """Codes (N, Z) from the slot prior (`arraystep.slot_prior_codes`): a number of words n from the corpus's,
        then a chain of clusters of exactly n words from the bigram model (conditioned on ending there), and for
        each a member's code. Uniforms come from eps (Phi(eps)): the same eps, the same codes. Drawn in numpy, on
        the CPU: a word at a time, a dozen small operations each, which cost a tenth of torch's there."""
        key = (self.slot_next.data_ptr(), self.slot_next._version, self.slot_next.device)
        kept = self.__dict__.get("_kept_chain_ends")
        if kept is None or kept[0] != key:
            ends = chain_ends(self.slot_next.cpu().numpy(), self.config.slots)
            kept = self.__dict__["_kept_chain_ends"] = (key, ends)
        z = slot_prior_codes(eps.float().cpu().numpy(), self.slot_words.cpu().numpy(), self.slot_next.cpu().numpy(),
                             kept[1], self.slot_bank_size.cpu().numpy(), self.slot_bank.cpu().numpy(),
                             self._empty_slot().cpu().numpy())
        return torch.from_numpy(z).to(eps.device, eps.dtype)

    @torch.no_grad()
    def fit_slot_prior(self, mu: torch.Tensor, words: torch.Tensor, seed: int = 0, iterations: int = 8) -> None:
        """Fit the slot prior to codes (N, Z) of training items of `words` (N,) words: k-means over their word
        slots' codes, a bigram model over the clusters (start and end included), and the count of words."""
        c = self.config
        K, d, C = c.slots, c.slot_dim, self.slot_next.shape[0] - 1
        mu = mu.float().cpu().reshape(-1, K, d)
        words = words.cpu().long().clamp(1, K)
        N = mu.shape[0]
        inside = torch.arange(K).unsqueeze(0) < words.unsqueeze(1)                 # (N, K)
        X = mu[inside]                                                             # (M, d) the word slots
        g = torch.Generator().manual_seed(seed)
        centres = X[torch.randperm(len(X), generator=g)[:C]].clone()
        for _ in range(iterations):
            a = _nearest(X, centres)
            count = torch.bincount(a, minlength=len(centres)).unsqueeze(1)
            sums = torch.zeros_like(centres).index_add_(0, a, X)
            centres = torch.where(count > 0, sums / count.clamp(min=1), centres)
        a = _nearest(X, centres)
        bank, size = torch.zeros(C, SLOT_BANK, d), torch.zeros(C, dtype=torch.long)
        order = torch.randperm(len(X), generator=g)
        order = order[torch.argsort(a[order], stable=True)]                       # members by cluster, shuffled
        first = torch.searchsorted(a[order], torch.arange(len(centres)))
        take = torch.bincount(a, minlength=len(centres)).clamp(max=SLOT_BANK)
        for k in range(len(centres)):
            bank[k, :take[k]] = X[order[first[k]:first[k] + take[k]]]
        size[:len(centres)] = take
        ids = torch.full((N, K), C, dtype=torch.long)
        ids[inside] = a
        prev = torch.cat([torch.full((N, 1), C, dtype=torch.long), ids], dim=1)   # (N, K + 1): start, w1 .. wK
        nxt = torch.cat([ids, torch.full((N, 1), C, dtype=torch.long)], dim=1)    # (N, K + 1): w1 .. wK, end
        used = torch.arange(K + 1).unsqueeze(0) <= words.unsqueeze(1)
        counts = torch.zeros((C + 1) * (C + 1)).index_add_(0, (prev * (C + 1) + nxt)[used],
                                                            torch.ones(int(used.sum())))
        counts = counts.view(C + 1, C + 1)
        self.slot_next.copy_(counts / counts.sum(dim=1, keepdim=True).clamp(min=1))
        self.slot_bank.copy_(bank)
        self.slot_bank_size.copy_(size)
        self.slot_words.copy_(torch.bincount(words, minlength=K + 1)[:K + 1].float() / N)

    @torch.no_grad()
    def fit_prior(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        """Fit the generating Gaussian to the aggregate posterior of the codes (N, Z): the means' mean, and their
        covariance plus the mean posterior variance (the moments of the mixture of the items' posteriors)."""
        mu, var = mu.float(), logvar.float().exp()
        cov = torch.cov(mu.T).reshape(mu.shape[1], mu.shape[1]) + torch.diag(var.mean(dim=0))
        cov = cov + 1e-5 * torch.eye(cov.shape[0], device=cov.device)
        self.prior_mean.copy_(mu.mean(dim=0))
        self.prior_scale.copy_(torch.linalg.cholesky(cov))
