"""The sequence VAE of Bowman et al. 2016, "Generating Sentences from a Continuous Space".

encoder RNN -> q(z|x) = N(mu, diag(exp(logvar)))  -> z -> decoder RNN's initial state
(and, optionally, an input at every step) -> p(x|z), one character at a time.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .arraystep import chain_ends, slot_prior_codes
from .prior import END, FIRST_WORD, OTHER, WordPrior, word_hashes, word_pieces
from .settings import SLOT_SUMMARY, ModelConfig
from .tokenizer import BOS_ID, EOS_ID, PAD_ID

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
LOG_2PI = math.log(2 * math.pi)
SLOT_BANK = 32          # codes kept per cluster of word slots, for the slot prior (`fit_slot_prior`)


class VAEOutput(NamedTuple):
    logits: torch.Tensor   # (B, T, V) scores of the next character
    mu: torch.Tensor       # (B, Z) posterior mean
    logvar: torch.Tensor   # (B, Z) posterior log-variance
    z: torch.Tensor        # (B, Z) the code the decoder saw
    log_q: torch.Tensor | None = None   # (B,) with a word prior: E log q(s|x) of the word slots (their entropy)
    log_p: torch.Tensor | None = None   # (B,) and log p(s|g) of the slots drawn (a lower bound: see `prior`)


class _Reading(NamedTuple):
    """The output layers' weights, as `_read_slots` reads them."""
    positions: torch.Tensor | None      # (P, H) embeddings of a character's position (the query's part)
    mix: torch.Tensor | None            # (H, H) the state's columns of `mix`
    mix_bias: torch.Tensor | None
    logits: torch.Tensor                # (V, H) and (V,): `to_logits`
    logits_bias: torch.Tensor


class _StepWeights(NamedTuple):
    """What a decoding step reads of the module (see `TextVAE._step_weights`)."""
    characters: torch.Tensor            # (V, G) the first layer's gates' share of each character, with biases
    recurrent: torch.Tensor             # (H, G) the first layer's recurrent weights, transposed
    recurrent_bias: torch.Tensor | None  # (G,) a GRU's recurrent bias
    fed: torch.Tensor | None            # (2 Z / K, G) input weights of the fed slots, transposed
    reading: _Reading


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                   eps: torch.Tensor | None = None) -> torch.Tensor:
    """z ~ q(z|x), differentiable in mu and logvar (Kingma & Welling 2014).

    `eps` is the standard normal noise when the caller draws it (it may add leading dimensions: K
    samples per item); otherwise it is drawn here, shaped like mu."""
    std = torch.exp(0.5 * logvar)
    if eps is None:
        eps = torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)
    return mu + std * eps.to(std.dtype)


def decoder_inputs(tokens: torch.Tensor) -> torch.Tensor:
    """<bos> c1 .. cn from c1 .. cn <eos>: the decoder predicts each character from those before it."""
    bos = torch.full_like(tokens[:, :1], BOS_ID)
    return torch.cat([bos, tokens[:, :-1]], dim=1)


def _nearest(x: torch.Tensor, centres: torch.Tensor, chunk: int = 65_536) -> torch.Tensor:
    """Index of the nearest centre of each row of x."""
    return torch.cat([torch.cdist(x[i:i + chunk], centres).argmin(dim=1) for i in range(0, len(x), chunk)])


class TextVAE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        rnn = CELLS[c.cell]
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=PAD_ID)
        drop = c.rnn_dropout if c.num_layers > 1 else 0.0
        directions = 2 if c.bidirectional else 1
        label_in = c.label_dim if c.num_labels else 0
        if c.num_labels:
            self.label_embedding = nn.Embedding(c.num_labels + int(c.null_label), c.label_dim)
        if not c.lm:
            # Two one-way stacks rather than nn.LSTM(bidirectional=True): the backward one reads each item
            # reversed within its own length, so padded batches need no packing (on CPUs the backward pass
            # of a packed sequence measured 20-40x slower than a padded one; see benchmarks/).
            # The encoder only summarises the item: by default half the decoder's width, about 3x cheaper.
            self.encoder = rnn(c.embed_dim, c.encoder_dim, c.num_layers, batch_first=True, dropout=drop)
            if c.bidirectional:
                self.encoder_reverse = rnn(c.embed_dim, c.encoder_dim, c.num_layers, batch_first=True, dropout=drop)
            per_code = c.slot_dim
            self.to_posterior = nn.Linear(directions * c.encoder_dim + label_in, 2 * per_code)
        if not c.lm or c.num_labels:
            # z (and label) -> the decoder's initial hidden state (and cell state, for an LSTM), every layer
            states = 2 if c.cell == "lstm" else 1
            self.to_state = nn.Linear(self._code_in, states * c.num_layers * c.hidden_dim)
        every_step = self._code_in if c.z_every_step and (not c.lm or c.num_labels) else 0
        if c.slots:
            # A code of many slots reaches every step as a short summary; its detail comes by attention
            # (Luong et al. 2015) over the slots, queried by the decoder's state and its position.
            self.to_summary = nn.Linear(self._code_in, SLOT_SUMMARY)
            every_step = (SLOT_SUMMARY if c.z_every_step else 0) + (2 * c.slot_dim if c.slot_feed else 0)
            H, slot_dim = c.hidden_dim, c.slot_dim
            self.slot_key = nn.Linear(slot_dim, H)
            self.slot_value = nn.Linear(slot_dim, H)
            self.slot_embedding = nn.Parameter(torch.randn(c.slots, H) * 0.1)
            self.position_query = nn.Embedding(c.slots * c.slot_span + 1, H)
            self.mix = nn.Linear(2 * H, H)
        self.decoder = rnn(c.embed_dim + every_step, c.hidden_dim, c.num_layers, batch_first=True, dropout=drop)
        self.to_logits = nn.Linear(c.hidden_dim, c.vocab_size)
        if c.fitted_prior and not c.lm:
            self.register_buffer("prior_mean", torch.zeros(c.latent_dim))
            self.register_buffer("prior_scale", torch.eye(c.latent_dim))        # Cholesky factor of the covariance
        if c.word_prior and not c.lm:
            self.word_prior = WordPrior(c.word_prior, c.slot_dim, c.global_dim, c.prior_hidden)
            # q(g|x): the words (classes and slots) read both ways, as the encoder reads characters
            E = self.word_prior.embed.embedding_dim
            self.global_reader = nn.LSTM(E, c.encoder_dim, batch_first=True)
            self.global_reader_reverse = nn.LSTM(E, c.encoder_dim, batch_first=True)
            self.to_global = nn.Linear(2 * c.encoder_dim, 2 * c.global_dim)
        if c.slot_prior and not c.lm:
            C, d = c.slot_prior, c.slot_dim
            self.register_buffer("slot_bank", torch.zeros(C, SLOT_BANK, d))          # member codes of each cluster
            self.register_buffer("slot_bank_size", torch.zeros(C, dtype=torch.long))
            self.register_buffer("slot_next", torch.zeros(C + 1, C + 1))            # row C: start, column C: end
            self.register_buffer("slot_words", torch.zeros(c.slots + 1))             # share of items of n words

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

    def start_decoder_from(self, lm: TextVAE, code_scale: float = 0.1) -> None:
        """Start this VAE's decoder from a trained language model (`--decoder-from`).

        The embedding, decoder RNN and output layer are copied; the weights that read the code (its
        columns of the decoder's input weights, and the code -> initial state layer) are scaled by
        `code_scale`, so the VAE begins as that language model and learns to use z from there."""
        c, s = self.config, lm.config
        if c.lm:
            raise ValueError("a language model has no code to learn: start a VAE from a language model")
        if c.slots:
            raise ValueError("a code of slots reads the decoder differently: start a one-code VAE (--slots 0)")
        if not s.lm or s.num_labels:
            raise ValueError("the decoder can only start from an unconditional language model (a --lm run)")
        for name in ("vocab_size", "cell", "embed_dim", "hidden_dim", "num_layers"):
            if getattr(c, name) != getattr(s, name):
                raise ValueError(f"the language model has {name} {getattr(s, name)}, this model {getattr(c, name)}")
        source = lm.state_dict()
        with torch.no_grad():
            for prefix in ("embedding", "decoder", "to_logits"):
                for name, p in getattr(self, prefix).named_parameters():
                    w = source[f"{prefix}.{name}"].to(p.dtype)
                    if p.shape == w.shape:
                        p.copy_(w)
                    else:                       # a layer-0 input weight: embedding columns first, then the code's
                        p[:, :w.shape[1]].copy_(w)
                        p[:, w.shape[1]:].mul_(code_scale)
            self.to_state.weight.mul_(code_scale)
            self.to_state.bias.zero_()

    @property
    def _code_in(self) -> int:
        return self.config.code_width

    def condition(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's code: z, with the label's embedding appended in a conditional model: (B, code)."""
        c = self.config
        if not c.num_labels:
            return z
        if labels is None:
            raise ValueError("this model is conditional: give a label for every item")
        y = self.label_embedding(labels.to(z.device)).to(z.dtype)
        return y if c.lm else torch.cat([z, y], dim=-1)

    # -- q(z|x) --------------------------------------------------------------------

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor,
               labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T) padded, lengths (B,) (, labels (B,)) -> mu, logvar (B, Z)."""
        c = self.config
        if c.lm:
            zeros = tokens.new_zeros((tokens.shape[0], c.latent_dim), dtype=self.to_logits.weight.dtype)
            return zeros, zeros
        if c.word_prior:
            return self._encode_words(tokens, lengths)
        B, T = tokens.shape
        last = (lengths - 1).clamp_min(0).view(B, 1, 1).expand(B, 1, c.encoder_dim)   # index of each item's last step
        out, _ = self.encoder(self.embedding(tokens))                                # (B, T, H) padded, no packing
        t = torch.arange(T, device=tokens.device).unsqueeze(0)                        # (1, T)
        if c.bidirectional:
            rev = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)  # reverse within length
            out_r, _ = self.encoder_reverse(self.embedding(tokens.gather(1, rev)))
        if c.slots:                                   # each slot: the mean of the states over its characters
            if c.bidirectional:
                out = torch.cat([out, out_r.gather(1, rev.unsqueeze(2).expand_as(out_r))], dim=-1)  # (B, T, 2H)
            if c.slot_break >= 0:                     # the slot of a character: the breaks before it
                breaks = (tokens == c.slot_break).long()
                slot = (breaks.cumsum(dim=1) - breaks).clamp(max=c.slots - 1)         # (B, T)
            else:
                slot = (t // c.slot_span).clamp(max=c.slots - 1)                      # (1, T)
            inside = (t < lengths.unsqueeze(1)).to(out.dtype)                          # (B, T)
            weights = F.one_hot(slot, c.slots).to(out.dtype) * inside.unsqueeze(2)     # (B, T, K)
            weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
            summary = torch.einsum("btk,bth->bkh", weights, out)                       # (B, K, 2H)
        else:
            summary = out.gather(1, last).squeeze(1)                                  # (B, H) state after the item
            if c.bidirectional:
                summary = torch.cat([summary, out_r.gather(1, last).squeeze(1)], dim=-1)  # (B, 2H)
        if c.num_labels:
            y = self.label_embedding(labels).to(summary.dtype)
            summary = torch.cat([summary, y.unsqueeze(1).expand(-1, c.slots, -1) if c.slots else y], dim=-1)
        mu, logvar = self.to_posterior(summary).chunk(2, dim=-1)                       # (B, [K,] Z / K)
        return mu.reshape(B, -1), logvar.clamp(-20.0, 10.0).reshape(B, -1)

    def _read_both_ways(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The mean of the encoder's states, both ways, over each row's first `lengths` steps: (N, 2H)."""
        _, T = tokens.shape
        t = torch.arange(T, device=tokens.device).unsqueeze(0)
        out, _ = self.encoder(self.embedding(tokens))
        rev = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)      # reverse within length
        out_r, _ = self.encoder_reverse(self.embedding(tokens.gather(1, rev)))
        out = torch.cat([out, out_r.gather(1, rev.unsqueeze(2).expand_as(out_r))], dim=-1)  # (N, T, 2H)
        inside = (t < lengths.unsqueeze(1)).to(out.dtype).unsqueeze(2)
        return (out * inside).sum(dim=1) / lengths.clamp_min(1).unsqueeze(1).to(out.dtype)

    def _word_posteriors(self, pieces: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(s|w) of words written alone: pieces (M, L) their characters then <eos>, lengths (M,) with the <eos>
        -> mean, log-variance (M, d) each. A word's slot depends on its characters alone, so a word's code in a
        sentence is the component the word prior gives it (`components`)."""
        mu, logvar = self.to_posterior(self._read_both_ways(pieces, lengths)).chunk(2, dim=-1)
        return mu, logvar.clamp(-20.0, 10.0)

    def _encode_words(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) of a word-prior model: each word's slot from its own characters (`_word_posteriors`), a slot past
        the last word its fixed empty code; the global code g from a reading, both ways, of the words (their
        classes and slots) in order."""
        c = self.config
        B, K, d = tokens.shape[0], c.slots, c.slot_dim
        pieces, piece_lengths, words = word_pieces(tokens, lengths, c.slot_break, K)
        inside = torch.arange(K, device=tokens.device).unsqueeze(0) < words.unsqueeze(1)       # (B, K)
        mu_w, logvar_w = self._word_posteriors(pieces, piece_lengths)                        # (M, d)
        empty = self.to_posterior.bias[:d]
        mu = empty.expand(B, K, d).clone().masked_scatter(inside.unsqueeze(2), mu_w.to(empty.dtype))
        logvar = torch.full_like(mu, -20.0).masked_scatter(inside.unsqueeze(2), logvar_w.to(empty.dtype))
        classes = self.word_prior.classes_of(word_hashes(tokens, lengths, c.slot_break, K)[0])
        x = self.word_prior.embed(classes) + self.word_prior.from_slot(mu)                  # (B, K, E)
        t = torch.arange(K, device=tokens.device).unsqueeze(0)
        rev = torch.where(inside, words.unsqueeze(1) - 1 - t, t)
        out, _ = self.global_reader(x)
        out_r, _ = self.global_reader_reverse(x.gather(1, rev.unsqueeze(2).expand_as(x)))
        last = (words - 1).view(B, 1, 1).expand(B, 1, out.shape[2])
        mu_g, logvar_g = self.to_global(torch.cat([out.gather(1, last), out_r.gather(1, last)], dim=2)[:, 0]).chunk(
            2, dim=-1)
        return (torch.cat([mu.reshape(B, -1), mu_g], dim=1),
                torch.cat([logvar.reshape(B, -1), logvar_g.clamp(-20.0, 10.0)], dim=1))

    # -- p(x|z) --------------------------------------------------------------------

    def initial_state(self, z: torch.Tensor):
        """The decoder's first state from the code, and what every step reads of the code, computed once per
        decoding rather than at every step: the RNN's state tanh(W z + b), (L, B, H) (two, for an LSTM); the
        part of the first layer's gates that comes from the code (1, B, G) (see `_code_gates`); with slots,
        the position (1, B) of the next character, the slots' attention keys and values (K, B, H), and for
        fed slots each slot beside the next (K + 1, B, 2 Z / K) and the code's word count (1, B). Every part
        has the batch on dim 1, where beam search and guidance index it.

        `z` here (and in `step`) is the conditioned code, `condition(z, labels)`."""
        self._step_weights(refresh=True)
        state = self._rnn_state(z)
        state = (*(state if isinstance(state, tuple) else (state,)), self._code_gates(z).unsqueeze(0))
        c = self.config
        if not c.slots:
            return state
        keys, values = self._slot_memory(z)
        position = torch.zeros((1, z.shape[0]), dtype=torch.long, device=z.device)
        state += (position, keys.transpose(0, 1), values.transpose(0, 1))
        if c.slot_feed:
            state += (self._slot_pairs(z).transpose(0, 1), self._code_words(z).unsqueeze(0))
        return state

    def _rnn_state(self, z: torch.Tensor):
        """The decoder RNN's first state, (L, B, H), or (h, c) for an LSTM."""
        c = self.config
        B = z.shape[0]
        if c.lm and not c.num_labels:
            h = z.new_zeros((c.num_layers, B, c.hidden_dim))
            return (h, torch.zeros_like(h)) if c.cell == "lstm" else h
        s = torch.tanh(self.to_state(z))
        if c.cell == "lstm":
            return tuple(s.view(B, 2, c.num_layers, c.hidden_dim).permute(1, 2, 0, 3).contiguous())
        return s.view(B, c.num_layers, c.hidden_dim).transpose(0, 1).contiguous()

    def _step_inputs(self, inputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.embedding(inputs)                                           # (B, T, E)
        if self._every_step_code:
            code = self.to_summary(z) if self.config.slots else z
            x = torch.cat([x, code.unsqueeze(1).expand(-1, x.shape[1], -1).to(x.dtype)], dim=-1)
        return x

    def _slots(self, code: torch.Tensor) -> torch.Tensor:
        """The code's K slots (B, K, Z / K), without the label part of a conditioned code."""
        c = self.config
        return code[:, :c.slots * c.slot_dim].reshape(code.shape[0], c.slots, -1)

    def _slot_memory(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, K, H) of the code's K slots, for the attention of `_read_slots`. Both come
        ready for it: a key divided by sqrt(H) (scaled dot-product attention), a value already multiplied by
        the output layer's weights for the context (`mix`, whose input is the state and the context side by
        side), so that the attention's weighted sum of values is that layer's share of the context, by
        linearity, at the cost of K products per item instead of one per character."""
        z = self._slots(code)
        H = self.config.hidden_dim
        keys = (self.slot_key(z) + self.slot_embedding) / H ** 0.5
        return keys, self.slot_value(z) @ self.mix.weight[:, H:].t()

    def slot_positions(self, inputs: torch.Tensor) -> torch.Tensor:
        """The position of each step of decoder inputs (B, T) (<bos> c1 ..) in the code of slots: the index of
        the character it predicts, (1, T), or with slots that follow words the breaks before it, (B, T)."""
        if self.config.slot_break >= 0:
            return (inputs == self.config.slot_break).long().cumsum(dim=1)
        return torch.arange(inputs.shape[1], device=inputs.device).unsqueeze(0)

    def _code_words(self, code: torch.Tensor) -> torch.Tensor:
        """The words (B,) a code of slots that follow words holds: those before its trailing empty slots. In
        the last of them a decoding ends where a break would come (see `step`). Other codes: no bound (2^30)."""
        c = self.config
        none = torch.full((code.shape[0],), 2**30, dtype=torch.long, device=code.device)
        if c.slot_break < 0 or c.num_labels:
            return none
        words = self._pieces_held(self._slots(code))
        return torch.where(words > 0, words, none)

    def _pieces_held(self, slots: torch.Tensor) -> torch.Tensor:
        """The pieces (B,) that slots (B, K, d) hold: those before the trailing empty slots (0 where all are)."""
        full = ((slots - self._empty_slot().to(slots)).abs().amax(dim=2) > 1e-4).long()      # (B, K)
        return torch.where(full.any(dim=1), self.config.slots - full.flip(1).argmax(dim=1), 0)

    def _slot_pairs(self, code: torch.Tensor) -> torch.Tensor:
        """Each of the code's slots beside the next one, (B, K + 1, 2 Z / K), with a slot of zeros after the last
        (read past the item's end): what `_feed` gives each character."""
        z = self._slots(code)
        slots = torch.cat([z, z.new_zeros((z.shape[0], 1, z.shape[2]))], dim=1)              # (B, K + 1, d)
        return torch.cat([slots, torch.cat([slots[:, 1:], slots[:, -1:]], dim=1)], dim=2)

    def _feed(self, pairs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The slot of each step and the one after it, (B, T, 2 Z / K), from `_slot_pairs` (B, K + 1, 2 Z / K)
        and positions (B or 1, T)."""
        c = self.config
        index = positions if c.slot_break >= 0 else positions // c.slot_span
        index = index.expand(pairs.shape[0], -1).clamp(max=pairs.shape[1] - 1)
        return pairs.gather(1, index.unsqueeze(2).expand(-1, -1, pairs.shape[2]))

    def _read_slots(self, out: torch.Tensor, positions: torch.Tensor, keys: torch.Tensor,
                    values: torch.Tensor, weights: _Reading | None = None) -> torch.Tensor:
        """Logits (B, T, V) from the decoder's states `out` (B, T, H) and attention over the code's slots
        (keys and values (B, K, H) from `_slot_memory`): query = state + an embedding of the character's
        position; logits = to_logits(tanh(mix([state, context]))), the context's share of `mix` being the
        attention's weighted sum of the values. `weights`: the layers' weights as `_step_weights` keeps them."""
        w = weights or self._reading()
        query = out + F.embedding(positions.clamp(max=w.positions.shape[0] - 1), w.positions)
        attention = torch.matmul(query, keys.to(out.dtype).transpose(1, 2)).softmax(dim=-1)   # (B, T, K)
        mixed = torch.baddbmm(F.linear(out, w.mix, w.mix_bias), attention, values.to(out.dtype))
        return F.linear(torch.tanh(mixed), w.logits, w.logits_bias)

    def _reading(self) -> _Reading:
        """The weights of `_read_slots` (those of the output layer alone, without slots)."""
        H = self.config.hidden_dim
        if not self.config.slots:
            return _Reading(None, None, None, self.to_logits.weight, self.to_logits.bias)
        return _Reading(self.position_query.weight, self.mix.weight[:, :H], self.mix.bias,
                        self.to_logits.weight, self.to_logits.bias)

    def decode(self, z: torch.Tensor, inputs: torch.Tensor, lengths: torch.Tensor | None = None,
               labels: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced decoding: z (B, Z), inputs (B, T) starting with <bos> -> logits (B, T, V)."""
        return self.decode_code(self.condition(z, labels), inputs, positions)

    def decode_code(self, code: torch.Tensor, inputs: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced decoding of a conditioned code (B, code) -> logits (B, T, V). With slots, `positions`
        (from `slot_positions` of the uncorrupted inputs) when `inputs` had characters dropped."""
        # The decoder is causal, so padding after an item cannot change that item's logits: no packing.
        x = self._step_inputs(inputs, code)
        if self.config.slots:
            positions = self.slot_positions(inputs) if positions is None else positions
            if self.config.slot_feed:
                x = torch.cat([x, self._feed(self._slot_pairs(code), positions).to(x.dtype)], dim=-1)
        out, _ = self.decoder(x, self._rnn_state(code))
        if self.config.slots:
            return self._read_slots(out, positions, *self._slot_memory(code))
        return self.to_logits(out)                                           # (B, T, V)

    def step(self, z: torch.Tensor, inputs: torch.Tensor, state):
        """One decoding step for sampling: inputs (B,) -> logits (B, V), next state (from `initial_state`).

        The same numbers as teacher forcing (`decode_code`), from what `initial_state` computed once: the
        code's share of the first layer's gates, the slots' keys and values, and the weights as a step reads
        them (`_step_weights`). A step's arithmetic is then the RNN's recurrent product and the output
        layers, in a few dozen small operations (a step of a few rows costs about their count)."""
        c, w = self.config, self._step_weights()
        n = 2 if c.cell == "lstm" else 1
        rnn_state, (code_gates, *memory) = state[:n], state[n:]
        gates = code_gates[0] + F.embedding(inputs, w.characters)                # (B, G)
        if not c.slots:
            out, rnn_state = self._rnn_step(gates, rnn_state, w)
            return F.linear(out, w.reading.logits, w.reading.logits_bias), (*rnn_state, code_gates)
        position, keys, values, *fed = memory
        if c.slot_break >= 0:                  # the position counts the breaks read so far
            position = position + (inputs == c.slot_break).unsqueeze(0)
        if fed:                                # this character's slot and the next, through their weights
            pair = self._feed(fed[0].transpose(0, 1), position.t())[:, 0]
            gates = torch.addmm(gates, pair.to(gates.dtype), w.fed)
        out, rnn_state = self._rnn_step(gates, rnn_state, w)
        logits = self._read_slots(out.unsqueeze(1), position.t(), keys.transpose(0, 1), values.transpose(0, 1),
                                  w.reading)[:, 0]
        if fed and c.slot_break >= 0:          # the code's last word: where a break would start another, end
            words = fed[1]
            if bool((position >= words - 1).any()):
                ended = ((inputs == EOS_ID) | (inputs == PAD_ID)).unsqueeze(0)       # rows done: left alone
                words = torch.where(ended, 2**30, words)
                fed = [fed[0], words]
                last, stop = (position == words - 1)[0].unsqueeze(1), (position >= words)[0].unsqueeze(1)
                merged = logits.clone()
                merged[:, EOS_ID] = torch.logaddexp(logits[:, EOS_ID], logits[:, c.slot_break])
                merged[:, c.slot_break] = float("-inf")
                logits = torch.where(last, merged, logits)
                ended = torch.full_like(logits, float("-inf"))                         # past it: end at once
                ended[:, EOS_ID] = 0.0
                logits = torch.where(stop, ended, logits)
        after = position if c.slot_break >= 0 else position + 1
        return logits, (*rnn_state, code_gates, after, keys, values, *fed)

    @property
    def _every_step_code(self) -> int:
        return self.config.every_step_width

    def _code_gates(self, code: torch.Tensor) -> torch.Tensor:
        """The first layer's gates' share (B, G) of the code's part of its input at every step."""
        width = self._every_step_code
        weight = self.decoder.weight_ih_l0
        if not width:
            return code.new_zeros((code.shape[0], weight.shape[0]), dtype=weight.dtype)
        s = self.to_summary(code) if self.config.slots else code
        E = self.config.embed_dim
        return F.linear(s.to(weight.dtype), weight[:, E:E + width])

    def _step_weights(self, refresh: bool = False) -> _StepWeights:
        """The weights a decoding step reads, as it reads them, gathered once rather than looked up at every
        step: above all the first layer's gates' share (V, G) of each character's embedding, with the gates'
        biases (for a GRU the input's only: its candidate gate reads the recurrent bias apart). Kept between
        decodings; `initial_state` makes them again (`refresh`) when a weight changed (in place, or moved)."""
        kept = self.__dict__.get("_kept_step_weights")
        if not refresh and kept is not None:
            return kept[1]
        rnn, c = self.decoder, self.config
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())
        if kept is not None and kept[0] == key:
            return kept[1]
        lstm, E = c.cell == "lstm", c.embed_dim
        with torch.no_grad():
            bias = rnn.bias_ih_l0 + rnn.bias_hh_l0 if lstm else rnn.bias_ih_l0
            characters = F.linear(self.embedding.weight, rnn.weight_ih_l0[:, :E], bias)
        fed = rnn.weight_ih_l0[:, E + self._every_step_code:].t() if c.slots and c.slot_feed else None
        weights = _StepWeights(characters, rnn.weight_hh_l0.t(), None if lstm else rnn.bias_hh_l0, fed,
                               self._reading())
        self.__dict__["_kept_step_weights"] = (key, weights)
        return weights

    def _rnn_step(self, gates: torch.Tensor, state, w: _StepWeights):
        """The decoder RNN on one step, from its first layer's input gates (B, G) (the product of its input
        weights and input, plus biases: see `_step_weights`): its output (B, H) and next state. The cell's
        arithmetic (PyTorch's gate order and formulas) on the module's own weights, without the fixed cost of
        a sequence call; further layers by the fused cell functions. Dropout between layers is training's, not
        applied here."""
        c = self.config
        lstm, H = c.cell == "lstm", c.hidden_dim
        h = state[0][0]
        if lstm:                                                                   # gates i, f, g, o
            gates = torch.addmm(gates, h, w.recurrent)
            s = gates.sigmoid()
            cell = s[:, H:2 * H] * state[1][0] + s[:, :H] * gates[:, 2 * H:3 * H].tanh()
            h = s[:, 3 * H:] * cell.tanh()
            hs, cs = [h], [cell]
        else:                                                                      # gates r, z, n
            hidden = torch.addmm(w.recurrent_bias, h, w.recurrent)
            rz = (gates[:, :2 * H] + hidden[:, :2 * H]).sigmoid()
            candidate = torch.tanh(gates[:, 2 * H:] + rz[:, :H] * hidden[:, 2 * H:])
            h = candidate + rz[:, H:] * (h - candidate)
            hs, cs = [h], []
        rnn = self.decoder
        for k in range(1, c.num_layers):
            weights = (getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}"),
                       getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}"))
            if lstm:
                h, cell = torch.lstm_cell(h, (state[0][k], state[1][k]), *weights)
                cs.append(cell)
            else:
                h = torch.gru_cell(h, state[0][k], *weights)
            hs.append(h)
        stack = (lambda xs: xs[0].unsqueeze(0)) if len(hs) == 1 else torch.stack
        return h, ((stack(hs), stack(cs)) if lstm else (stack(hs),))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, inputs: torch.Tensor | None = None,
                sample: bool = True, generator: torch.Generator | None = None,
                eps: torch.Tensor | None = None, labels: torch.Tensor | None = None, prior_weight: float = 1.0,
                prior_dropout: float = 0.0) -> VAEOutput:
        """tokens (B, T) = c1 .. cn <eos> padded; `inputs` lets the caller pass corrupted decoder inputs
        (character dropout); `eps` (B, Z) the noise of the reparameterisation; `sample=False` decodes
        from the posterior mean.

        With a word prior, also E log q(s|x) and log p(s|g) of the slots drawn: the encoder feels the prior's
        term with weight `prior_weight` (the KL's beta), the prior itself always with weight 1, so that it
        learns the codes from the first step while the KL is annealed; `prior_dropout` hides that share of the
        earlier words from the prior (`prior.WordPrior._states`)."""
        c = self.config
        mu, logvar = self.encode(tokens, lengths, labels)
        words = hashes = None
        if c.word_prior:
            hashes, words = word_hashes(tokens, lengths, c.slot_break, c.slots)
        if not sample or c.lm:
            z = mu
        else:
            if c.word_prior:
                if eps is None:
                    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
                eps = eps * self.random_dims(words)
            z = reparameterize(mu, logvar, generator, eps)
        positions = self.slot_positions(decoder_inputs(tokens)) if c.slots else None
        if inputs is None:
            inputs = decoder_inputs(tokens)
        logits = self.decode(z, inputs, lengths, labels, positions)
        if not c.word_prior:
            return VAEOutput(logits, mu, logvar, z)
        slots = self.random_dims(words)[:, :c.slots * c.slot_dim]
        log_q = (-0.5 * (LOG_2PI + 1 + logvar[:, :c.slots * c.slot_dim].float()) * slots).sum(dim=1)
        felt = z.detach() + prior_weight * (z - z.detach())                 # the value z, beta times its gradient
        z_p = torch.cat([felt[:, :c.slots * c.slot_dim], z[:, c.slots * c.slot_dim:]], dim=1)
        log_p = self.log_prior(z_p, words, self.word_prior.classes_of(hashes), prior_dropout, with_global=False)
        return VAEOutput(logits, mu, logvar, z, log_q, log_p)
