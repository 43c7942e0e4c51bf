"""A prior learned with the model: a language model over the code's word slots.

A sentence's code is a global code g (what the sentence says as a whole) and one slot s_i per word (what spells
it). The prior is

    p(g, s) = N(g; 0, I) * prod_i p(s_i | s_<i, g) * p(end | s_<=n, g),
    p(s_i | s_<i, g) = sum_k pi_k(s_<i, g) N(s_i; c_k, diag sigma_k^2),

an LSTM over the slots read so far, started from g, whose softmax picks one of the corpus's frequent words (each a
Gaussian component of its own), "another word" (one broad Gaussian), or the end of the sentence: a word-level
language model whose vocabulary is a mixture of Gaussians in the slots' space (a mixture density network, Bishop
1994, run autoregressively as in Graves 2013; its components play the part of VampPrior's pseudo-inputs, Tomczak &
Welling 2018). The KL term of the ELBO is measured against it, so a slot may hold a whole word at the cost of that
word under the language model, not of a nat a dimension under N(0, I); samples are draws from this density, and
the points of a path between two sentences are sentences the prior would write for the path's global codes.

Training bounds log p(s_i | .) from below by the term of the item's own word, log pi_w + log N(s_i; c_w, sigma_w),
and reads the words before it by their ids (teacher forcing): one softmax per word (adaptive, Grave et al. 2017),
no sum over all components. Evaluation reads each earlier slot as its nearest component (a function of the code,
so that the bound is one on log p(z)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.tokenizer import EOS_ID, PAD_ID

END, OTHER = 0, 1           # the prior's classes before the words: the end of the item, a word outside the vocabulary
FIRST_WORD = 2
WORD_HASH = 0x9E3779B97F4A7C15    # the multiplier of the words' hash (a 64-bit odd constant)
LOG_2PI = math.log(2 * math.pi)
MAX_WORD = 24           # characters of a word in a word prior's vocabulary, at most (longer ones are OTHER)


def _signed(x: int) -> int:
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def _powers(n: int, device) -> torch.Tensor:
    """WORD_HASH^j mod 2^64 for j < n, as signed 64-bit integers (torch's int64 arithmetic wraps around)."""
    out, p = [], 1
    for _ in range(n):
        out.append(_signed(p))
        p = p * WORD_HASH & ((1 << 64) - 1)
    return torch.tensor(out, dtype=torch.long, device=device)


def word_pieces(tokens: torch.Tensor, lengths: torch.Tensor, space: int, slots: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The words of each item as rows of characters, split at `space` as the code's slots are (the last slot takes
    the rest of a longer item, spaces and all), or with `space` -1 each character a piece of its own: pieces
    (M, L + 1), each word's characters then <eos>, padded; their lengths (M,), <eos> included; and each item's
    number of pieces (B,), at least 1, at most `slots`. Rows are in order, item by item, piece by piece."""
    B, T = tokens.shape
    t = torch.arange(T, device=tokens.device).unsqueeze(0)
    inside = (t < lengths.unsqueeze(1)) & (tokens != EOS_ID) & (tokens != PAD_ID)
    if space < 0:                                                      # a piece a character
        brk = inside & (t < slots - 1)
        raw = t.expand(B, T)
        slot = raw.clamp(max=slots - 1)
        letters = inside
    else:
        brk = (tokens == space) & inside
        raw = brk.long().cumsum(dim=1) - brk.long()                    # words before each character
        slot = raw.clamp(max=slots - 1)
        letters = inside & ~(brk & (raw < slots - 1))                  # a space that ends a slot is no letter
    count = torch.zeros((B, slots), dtype=torch.long, device=tokens.device).scatter_add_(1, slot, letters.long())
    before = count.cumsum(dim=1) - count                               # letters of the slots before
    pos = letters.long().cumsum(dim=1) - 1 - before.gather(1, slot)
    if space < 0:
        words = inside.long().sum(dim=1).clamp(min=1, max=slots)
    else:
        words = (brk.long().sum(dim=1) + 1).clamp(max=slots)
    L = int(count.max()) if count.numel() else 0
    grid = torch.zeros((B, slots, L + 1), dtype=torch.long, device=tokens.device)
    b = torch.arange(B, device=tokens.device).unsqueeze(1).expand(B, T)
    grid[b[letters], slot[letters], pos[letters]] = tokens[letters]
    used = torch.arange(slots, device=tokens.device).unsqueeze(0) < words.unsqueeze(1)      # (B, K)
    grid.scatter_(2, count.unsqueeze(2), EOS_ID)
    return grid[used], count[used] + 1, words


def word_hashes(tokens: torch.Tensor, lengths: torch.Tensor, space: int, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 64-bit hash of each word's characters (B, slots) (0 past an item's words), words as `word_pieces` splits
    them, and the number of words of each item (B,)."""
    pieces, n, words = word_pieces(tokens, lengths, space, slots)
    letters = torch.arange(pieces.shape[1], device=tokens.device).unsqueeze(0) < (n - 1).unsqueeze(1)
    contrib = torch.where(letters, (pieces + 1) * _powers(pieces.shape[1], tokens.device), torch.zeros_like(pieces))
    used = torch.arange(slots, device=tokens.device).unsqueeze(0) < words.unsqueeze(1)
    h = torch.zeros((tokens.shape[0], slots), dtype=torch.long, device=tokens.device)
    h[used] = contrib.sum(dim=1)
    return h, words


class WordPrior(nn.Module):
    """p(s | g) over a code's word slots (see the module's text). Classes: END, OTHER, then `words` words, the most
    frequent first (the adaptive softmax gives the frequent ones the full width). A word's component is the
    encoder's posterior of that word written alone (`spellings`: its characters), which the model computes
    (`TextVAE.component_table`); OTHER's is a broad Gaussian of its own."""

    def __init__(self, words: int, slot_dim: int, global_dim: int, hidden: int = 256, embed: int = 128,
                 longest: int = MAX_WORD):
        super().__init__()
        n = words + FIRST_WORD
        self.classes, self.slot_dim, self.hidden = n, slot_dim, hidden
        self.embed = nn.Embedding(n, embed)                  # the previous word; END's row starts the item
        self.from_slot = nn.Linear(slot_dim, embed)          # and its slot (what an OTHER word has of its own)
        self.from_global = nn.Linear(global_dim, 2 * hidden)
        self.rnn = nn.LSTM(embed + global_dim, hidden, batch_first=True)
        cutoffs = [c for c in (2000, 10000) if c < n - 1]
        self.out = nn.AdaptiveLogSoftmaxWithLoss(hidden, n, cutoffs or [n - 1], div_value=4.0, head_bias=True)
        self.other_mean = nn.Parameter(torch.zeros(slot_dim))
        self.other_logvar = nn.Parameter(torch.zeros(slot_dim))
        self.register_buffer("hashes", torch.zeros(words, dtype=torch.long))            # the words, by frequency
        self.register_buffer("spellings", torch.zeros((words, longest), dtype=torch.long))   # their characters

    # -- words to classes ------------------------------------------------------------------------------------

    def classes_of(self, hashes: torch.Tensor) -> torch.Tensor:
        """The class of each word hash: FIRST_WORD + its rank, or OTHER."""
        kept = self.__dict__.get("_sorted")
        key = (self.hashes.data_ptr(), self.hashes._version, self.hashes.device)
        if kept is None or kept[0] != key:
            order = torch.argsort(self.hashes)
            kept = self.__dict__["_sorted"] = (key, self.hashes[order], order)
        sorted_hashes, order = kept[1], kept[2]
        if len(sorted_hashes) == 0:
            return torch.full_like(hashes, OTHER)
        i = torch.searchsorted(sorted_hashes, hashes).clamp(max=len(sorted_hashes) - 1)
        return torch.where(sorted_hashes[i] == hashes, order[i] + FIRST_WORD, torch.full_like(hashes, OTHER))

    @staticmethod
    def nearest(s: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor) -> torch.Tensor:
        """The component (OTHER or a word) of highest density at each slot s (..., d), among the table's rows from
        OTHER on (`means`, `logvars` (C, d)): how evaluation reads a code's earlier words, a function of the code."""
        mean, logvar = means[OTHER:].float(), logvars[OTHER:].float()
        flat = s.reshape(-1, s.shape[-1]).float()
        # -2 log N(x; c, var) up to a constant, sum (x - c)^2 / var + log var, is one product: [x^2, x] @ weights
        weights = torch.cat([(-logvar).exp(), -2 * mean * (-logvar).exp()], dim=1).t()          # (2d, C)
        const = (mean.pow(2) * (-logvar).exp() + logvar).sum(dim=1)                             # (C,)
        best = []
        for start in range(0, len(flat), 4096):
            x = flat[start:start + 4096]
            best.append(torch.addmm(const, torch.cat([x.pow(2), x], dim=1), weights).argmin(dim=1) + OTHER)
        return torch.cat(best).view(s.shape[:-1]) if best else flat.new_zeros(s.shape[:-1], dtype=torch.long)

    # -- the density -------------------------------------------------------------------------------------------

    def _initial(self, g: torch.Tensor):
        h, c = torch.tanh(self.from_global(g)).chunk(2, dim=-1)
        return h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()

    def _states(self, s: torch.Tensor, classes: torch.Tensor, g: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """The LSTM's outputs (B, K + 1, H) before each slot and after the last: inputs END (the start), then each
        word's class and slot; g at every step. `dropout`: the share of earlier words hidden (set to the start's
        input) in training, so that the prior leans on g (Bowman et al. 2016's word dropout, here on words)."""
        B, K, _ = s.shape
        x = self.embed(classes) + self.from_slot(s.to(self.from_slot.weight.dtype))         # (B, K, E)
        start = self.embed.weight[END].expand(B, 1, -1)
        if dropout > 0 and self.training:
            hide = torch.rand((B, K, 1), device=s.device) < dropout
            x = torch.where(hide, start.expand(B, K, -1), x)
        x = torch.cat([start, x], dim=1)                                                   # (B, K + 1, E)
        x = torch.cat([x, g.unsqueeze(1).expand(-1, K + 1, -1).to(x.dtype)], dim=2)
        out, _ = self.rnn(x, self._initial(g.to(x.dtype)))
        return out

    def log_prob(self, s: torch.Tensor, words: torch.Tensor, g: torch.Tensor, classes: torch.Tensor,
                 means: torch.Tensor, logvars: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """A lower bound on log p(s | g) per item (B,): slots s (B, K, d) of items of `words` (B,) words, read as the
        components `classes` (B, K) (the words' own in training, else each slot's nearest), whose Gaussians are
        `means`, `logvars` (B, K, d): the term of that component, log pi_k + log N(s; c_k, sigma_k^2), a place."""
        B, K, _ = s.shape
        t = torch.arange(K + 1, device=s.device).unsqueeze(0)
        targets = torch.cat([classes, classes.new_zeros((B, 1))], dim=1)                   # (B, K + 1)
        targets = torch.where(t == words.unsqueeze(1), torch.full_like(targets, END), targets)
        used = t <= words.unsqueeze(1)                                                      # the n words and the end
        out = self._states(s, classes, g, dropout)
        choice = self.out(out[used].float(), targets[used]).output                           # (M,) log pi of each
        rows = torch.arange(B, device=s.device).unsqueeze(1).expand(-1, K + 1)
        total = torch.zeros(B, device=s.device).index_add_(0, rows[used], choice)
        inside = t[:, :K] < words.unsqueeze(1)                                               # the word slots
        gauss = -0.5 * (LOG_2PI + logvars + (s.float() - means).pow(2) / logvars.exp()).sum(dim=2)   # (B, K)
        return total + (gauss * inside).sum(dim=1)

    # -- drawing from it ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, g: torch.Tensor, uniforms: torch.Tensor, noise: torch.Tensor, empty: torch.Tensor,
               means: torch.Tensor, logvars: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0,
               other_words: bool = False, forced: torch.Tensor | None = None,
               forced_slots: torch.Tensor | None = None,
               lengths: torch.Tensor | None = None,
               finals: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Slots (N, K, d) from the prior given g (N, G): at each place a class drawn by the inverse of its
        distribution's CDF at `uniforms` (N, K) (the same uniforms, the same draws: a path shares them), then the
        slot: a word's component mean (the code of the word written alone: `means` (C, d)), or for OTHER
        c + sigma * noise (N, K, d). After the end, every slot is `empty` (d,); at the K-th word the item ends.
        `temperature` and `top_p` (nucleus, Holtzman et al. 2020) sharpen the choice of words; 0 takes the
        likeliest. Words outside the vocabulary (OTHER) are drawn only with `other_words`: the decoder spells what
        a slot holds, and a point drawn from the broad Gaussian holds no word in particular. No three words come
        twice in an item: the likeliest words would loop. With target `lengths` (N,) in words (a path's inner
        points: between its ends' lengths), from an item's target on, each word adds LENGTH_PULL nats
        to the log-probabilities of the end and of the `finals` (C,) (the words that close a sentence, such as
        "year."), so that it closes near its length as its sentences close.

        With `forced` classes (N, K) (END after the last word) and their slots `forced_slots` (N, K, d), the prior
        reads those instead of drawing, and the second result is, at each place, the middle of the forced class's
        share of the CDF (0.5 where it has none): the uniforms that draw that item, its point in the prior's noise
        space, where paths between items run. Otherwise the second result is the classes drawn (N, K)."""
        N, K = uniforms.shape
        d = self.slot_dim
        s = empty.to(g.dtype).expand(N, K, d).clone()
        state = self._initial(g)
        x = self.embed.weight[END].expand(N, -1)
        alive = torch.ones(N, dtype=torch.bool, device=g.device)
        chosen = torch.full((N, K), END, dtype=torch.long, device=g.device)
        places = torch.full((N, K), 0.5, device=g.device)
        rows = torch.arange(N, device=g.device)
        for i in range(K):
            out, state = self.rnn(torch.cat([x, g], dim=1).unsqueeze(1), state)
            logp = _rules(self.out.log_prob(out[:, 0]), i, chosen, rows, other_words, lengths, finals)   # (N, C)
            if forced is None:                    # only the items not yet ended: the others' draws are not read
                k = torch.full((N,), END, dtype=torch.long, device=g.device)
                k[alive] = pick(logp[alive], uniforms[alive, i], temperature, top_p)
            else:
                k = forced[:, i]
                places[alive, i] = place(logp[alive], k[alive], temperature, top_p)
            chosen[:, i] = torch.where(alive, k, torch.full_like(k, END))
            alive &= k != END
            if not bool(alive.any()):
                break
            slot = means[k]
            if forced_slots is not None:
                slot = forced_slots[:, i].to(slot.dtype)
            else:
                other = k == OTHER
                if bool(other.any()):
                    slot = torch.where(other.unsqueeze(1), slot + logvars[k].mul(0.5).exp() * noise[:, i], slot)
            s[:, i] = torch.where(alive.unsqueeze(1), slot, s[:, i])
            x = self.embed(k) + self.from_slot(slot)
        return s, (chosen if forced is None else places)


LENGTH_PULL = 1.0    # nats added to the log-probabilities of the end and of closing words, a word past a target length


def _rules(logp: torch.Tensor, i: int, chosen: torch.Tensor, rows: torch.Tensor, other_words: bool,
           lengths: torch.Tensor | None, finals: torch.Tensor | None) -> torch.Tensor:
    """The rules of `WordPrior.sample`'s draw at place i, applied to its log-probabilities logp (N, C): at least one
    word, no OTHER unless asked for, the pull towards target `lengths`, and no three words (`chosen`) twice."""
    if i == 0:
        logp[:, END] = float("-inf")                                                 # at least one word
    if not other_words:
        logp[:, OTHER] = float("-inf")
    if lengths is not None and i > 0:
        over = LENGTH_PULL * (i + 1 - lengths.to(logp.dtype)).clamp(min=0)
        logp[:, END] += over
        if finals is not None:
            logp += over.unsqueeze(1) * finals.to(logp.dtype)
    for j in range(2, i):
        again = (chosen[:, j - 2] == chosen[:, i - 2]) & (chosen[:, j - 1] == chosen[:, i - 1])
        if bool(again.any()):
            logp[rows[again], chosen[again, j]] = float("-inf")
    return logp


def _distribution(logp: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """softmax(logp / temperature), cut to its nucleus `top_p` and renormalised: (N, C), classes in their order."""
    p = F.softmax(logp.float() / temperature, dim=1)
    if top_p < 1:
        p = p * (p >= _nucleus_floor(p, top_p).unsqueeze(1))
        p = p / p.sum(dim=1, keepdim=True)
    return p


def _nucleus_floor(p: torch.Tensor, top_p: float, first: int = 256) -> torch.Tensor:
    """The smallest probability (N,) in each row's nucleus: the likeliest classes, in order, while the mass before
    them is under `top_p`. Found among the `first` likeliest (4 times more until every row's nucleus ends there):
    a full sort of 20,000 words for each row of each step was most of the time of sampling."""
    k = min(first, p.shape[1])
    while True:
        top = p.topk(k, dim=1).values                                                      # (N, k), descending
        keep = top.cumsum(dim=1) - top < top_p
        if k == p.shape[1] or not bool(keep[:, -1].any()):
            return top.masked_fill(~keep, float("inf")).amin(dim=1)
        k = min(4 * k, p.shape[1])


def pick(logp: torch.Tensor, u: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """The class (N,) at which the CDF of softmax(logp / temperature), cut to its nucleus `top_p`, passes u (N,);
    temperature 0: the likeliest class."""
    if temperature <= 0:
        return logp.argmax(dim=1)
    cdf = _distribution(logp, temperature, top_p).cumsum(dim=1)
    k = torch.searchsorted(cdf, (u.float() * cdf[:, -1]).unsqueeze(1).clamp(max=cdf[:, -1:] * (1 - 1e-7)))
    return k.squeeze(1).clamp(max=cdf.shape[1] - 1)


def place(logp: torch.Tensor, k: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """The u (N,) at the middle of class k's share of the CDF that `pick` inverts (`pick(logp, place(..)) == k`),
    or 0.5 where k has no share (and under temperature 0, where every u takes the likeliest class)."""
    if temperature <= 0:
        return torch.full(k.shape, 0.5, device=logp.device)
    p = _distribution(logp, temperature, top_p)
    cdf = p.cumsum(dim=1)
    share = p.gather(1, k.unsqueeze(1))[:, 0]
    middle = (cdf.gather(1, k.unsqueeze(1))[:, 0] - share / 2) / cdf[:, -1]
    return torch.where(share > 0, middle, torch.full_like(middle, 0.5))


PRIOR_WORDS = 20_000    # words in a word prior's vocabulary, at most: the most frequent, each seen at least twice
PRIOR_MIN_COUNT = 2


def vocabulary(texts, tokenizer, space: int, most: int = PRIOR_WORDS, min_count: int = PRIOR_MIN_COUNT,
               longest: int = MAX_WORD) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A word prior's vocabulary from training texts (strings): the words (split at each space, as the code's slots
    are; with `space` -1, the characters) seen at least `min_count` times and at most `longest` characters long, the most frequent first (ties in
    order of first appearance), at most `most`: their hashes (W,), their characters (W, longest) and the words."""
    from collections import Counter
    counts = Counter(w for t in texts for w in (t.split(" ") if space >= 0 else t) if w)
    kept = [w for w, n in counts.most_common() if n >= min_count and len(w) <= longest][:most]
    if not kept:
        return torch.zeros(0, dtype=torch.long), torch.zeros((0, longest), dtype=torch.long), []
    tokens, lengths = tokenizer.batch(kept, add_eos=False)
    hashes = word_hashes(tokens, lengths, space, 1)[0][:, 0]
    spellings = torch.zeros((len(kept), longest), dtype=torch.long)
    spellings[:, :tokens.shape[1]] = tokens
    return hashes, spellings, kept
