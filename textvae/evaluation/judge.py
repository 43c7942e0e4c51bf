"""An outside judge of generated text: n-gram models with interpolated modified Kneser-Ney smoothing.

Fitted on a model's training split, the judge scores samples and held-out text with no part of the model in
the loop, so its figures cannot be flattered by the model's own likelihood. The smoothing is the interpolated
form of Kneser & Ney (1995, "Improved backing-off for M-gram language modeling") with the three discounts per
order of Chen & Goodman (1998, "An Empirical Study of Smoothing Techniques for Language Modeling").
`fluency` adds reverse perplexity (Zhao et al. 2018, "Adversarially Regularized Autoencoders"), which sees
mode collapse that forward perplexity misses. Numpy and the standard library only: no torch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise

import numpy as np

START, END, UNK = "<s>", "</s>", "<unk>"
_FLOOR = 0.05       # smallest discount: every seen context keeps some mass for the lower orders


def words(text: str) -> list[str]:
    """The whitespace words of a text."""
    return text.split()


def _discounts(counts: Iterable[int]) -> tuple[float, float, float, float]:
    """(0, D1, D2, D3+) of one order from its count-of-counts n1..n4 (Chen & Goodman 1998):
    Y = n1/(n1+2 n2), Dk = k - (k+1) Y n(k+1)/nk. Each Dk is clamped into [0.05, k - 0.05], so a count
    keeps a positive share and every context a positive back-off weight. A Dk whose nk is zero applies to no
    n-gram but D3+, which also covers counts of 4 and more; it falls back to the discount before it (Y for D1)."""
    n = Counter(counts)
    n1, n2, n3, n4 = n[1], n[2], n[3], n[4]
    y = n1 / (n1 + 2 * n2) if n1 + 2 * n2 else 0.5
    out = [0.0]
    previous = y
    for k, (nk, nnext) in enumerate(((n1, n2), (n2, n3), (n3, n4)), start=1):
        d = k - (k + 1) * y * nnext / nk if nk else previous
        d = min(max(d, _FLOOR), k - _FLOOR)
        out.append(d)
        previous = d
    return tuple(out)


class KneserNey:
    """Interpolated modified Kneser-Ney n-gram model over tokens.

    Each sequence is padded with order-1 `<s>` and ends with `</s>`, which is predicted. The highest order
    uses raw counts; a lower order uses continuation counts, the number of distinct tokens seen just before
    its n-gram (Kneser & Ney 1995), except for n-grams that begin with `<s>`: nothing but padding can stand
    before them, so they keep raw counts (as KenLM does). The lowest order interpolates with the uniform
    distribution over the vocabulary, so every token, an unseen one (`<unk>`) included, gets a non-zero
    probability. Counts live in dicts keyed by tuples; each context's total and back-off weight are cached at
    fit time, so scoring is dict lookups only.
    """

    def __init__(self, order: int, vocabulary: frozenset[str], counts: dict[int, dict[tuple, int]],
                 contexts: dict[int, dict[tuple, tuple]], discounts: dict[int, tuple[float, ...]]):
        self.order = order
        self.vocabulary = vocabulary        # the tokens that can be predicted: `</s>` and `<unk>`, never `<s>`
        self.counts = counts                # order -> {n-gram: raw or continuation count}
        # order -> {context: (total count, back-off weight, N1, N2, N3+)}, N_k the number of distinct tokens
        # seen after the context with count k (3 and more for N3+); the weight is (D1 N1 + D2 N2 + D3 N3+)/total
        self.contexts = contexts
        self.discounts = discounts          # order -> (0, D1, D2, D3+)
        self._uniform = 1.0 / len(vocabulary)

    @classmethod
    def fit(cls, sequences: Iterable[Sequence[str]], order: int = 3,
            vocabulary: Iterable[str] | None = None) -> KneserNey:
        """Count the n-grams of `sequences`. The vocabulary is their tokens, or `vocabulary` when given (tokens
        outside it count as `<unk>`), plus `</s>` and `<unk>`: giving one lets judges fitted on different
        texts score on a common footing."""
        if order < 1:
            raise ValueError(f"order must be at least 1, not {order}")
        given = None if vocabulary is None else (frozenset(vocabulary) - {START}) | {END, UNK}
        seen: set[str] = set()
        pad = [START] * (order - 1)
        top: Counter = Counter()
        for sequence in sequences:
            tokens = list(sequence)
            if given is None:
                seen.update(tokens)
                if START in seen:           # a literal `<s>` in the text is not the padding
                    tokens = [UNK if t == START else t for t in tokens]
            else:
                tokens = [t if t in given else UNK for t in tokens]
            padded = pad + tokens + [END]
            top.update(zip(*(padded[i:] for i in range(order))))
        vocab = given if given is not None else (frozenset(seen) - {START}) | {END, UNK}

        counts: dict[int, dict[tuple, int]] = {order: dict(top)}
        starts = [(g, c) for g, c in top.items() if g[0] == START]
        for k in range(order - 1, 0, -1):
            # distinct left neighbours = distinct (k+1)-gram types ending in the k-gram
            level = Counter(g[1:] for g in counts[k + 1] if g[1] != START)
            for g, c in starts:
                if g[order - k] == START:
                    level[g[order - k:]] += c
            counts[k] = dict(level)

        contexts: dict[int, dict[tuple, tuple]] = {}
        discounts: dict[int, tuple[float, ...]] = {}
        for k, level in counts.items():
            d = discounts[k] = _discounts(level.values())
            total: dict[tuple, int] = {}
            for g, c in level.items():
                h = g[:-1]
                total[h] = total.get(h, 0) + c
            n1 = Counter(g[:-1] for g, c in level.items() if c == 1)
            n2 = Counter(g[:-1] for g, c in level.items() if c == 2)
            n3 = Counter(g[:-1] for g, c in level.items() if c >= 3)
            contexts[k] = {h: (t, (d[1] * n1[h] + d[2] * n2[h] + d[3] * n3[h]) / t, n1[h], n2[h], n3[h])
                           for h, t in total.items()}
        return cls(order, vocab, counts, contexts, discounts)

    def _map(self, token: str) -> str:
        return token if token in self.vocabulary else UNK

    def _prob(self, token: str, context: tuple) -> float:
        """P(token | the last order-1 tokens of context), both already mapped; a shorter context stops at the
        orders it covers. Built up from the uniform distribution, one order at a time."""
        p = self._uniform
        for k in range(1, min(self.order, len(context) + 1) + 1):
            h = context[len(context) - k + 1:] if k > 1 else ()
            stats = self.contexts[k].get(h)
            if stats is None:               # an unseen context passes the lower orders' estimate on unchanged
                continue
            c = self.counts[k].get(h + (token,), 0)
            p = ((c - self.discounts[k][min(c, 3)]) if c else 0.0) / stats[0] + stats[1] * p
        return p

    def prob(self, token: str, context: Sequence[str] = ()) -> float:
        """P(token | context). The context is the tokens before it, `<s>` where the sequence starts; only its
        last order-1 count, and a shorter one uses the lower orders alone. Sums to 1 over the vocabulary."""
        mapped = tuple(t if t == START else self._map(t) for t in context)
        return self._prob(self._map(token), mapped)

    def logprob_next(self, context: Sequence[str], token: str) -> float:
        """Natural log of `prob(token, context)`."""
        return math.log(self.prob(token, context))

    def logprob(self, sequence: Sequence[str]) -> float:
        """Natural log probability of one sequence, its `</s>` included."""
        n = self.order - 1
        padded = tuple([START] * n + [self._map(t) for t in sequence] + [END])
        return sum(math.log(self._prob(padded[i], padded[i - n:i])) for i in range(n, len(padded)))

    def perplexity(self, sequences: Iterable[Sequence[str]]) -> float:
        """exp(-sum of log probabilities / number of predicted tokens), each sequence's `</s>` counted;
        nan for no sequences."""
        total, tokens = 0.0, 0
        for sequence in sequences:
            total += self.logprob(sequence)
            tokens += len(sequence) + 1
        return math.exp(-total / tokens) if tokens else float("nan")


def _tokenizer(unit: str):
    if unit == "word":
        return words
    if unit == "char":
        return list
    raise ValueError(f"unit must be 'word' or 'char', not {unit!r}")


def _order(unit: str, order: int | None) -> int:
    return order if order is not None else (3 if unit == "word" else 5)


def _ratio(a: float, b: float) -> float:
    return a / b if b and not (math.isnan(a) or math.isnan(b)) else float("nan")


def _share(hits: int, n: int) -> float:
    return hits / n if n else float("nan")


def _real_words(texts: list[str], known: set[str]) -> float:
    """Share of the whitespace words of `texts` that are in `known`; nan for no words."""
    all_words = [w for t in texts for w in words(t)]
    return _share(sum(w in known for w in all_words), len(all_words))


def _distinct_2(sequences: list[list[str]]) -> float:
    """Distinct bigrams over all bigrams, within sequences (Li et al. 2016's distinct-2); nan for none."""
    bigrams = [b for s in sequences for b in pairwise(s)]
    return _share(len(set(bigrams)), len(bigrams))


def fluency(samples: list[str], held_out: list[str], train: list[str], seed: int = 0,
            reverse_lines: int | None = None, unit: str = "word", order: int | None = None) -> dict:
    """Figures of generated texts as an outside judge sees them. The tokens are whitespace words
    (`unit="word"`) or characters (`unit="char"`, for word lists and names); the judge's order is `order`,
    by default 3 for words and 5 for characters. An empty sample is a sequence with only its end token.

    - judge_ppl_samples, judge_ppl_held_out: perplexity of a Kneser-Ney judge fitted on `train` on the samples
      and on `held_out`; judge_ratio: the first over the second (real held-out text: 1.0; shuffled words
      score several times more);
    - real_words, real_words_held_out: share of the whitespace words of the samples (of held_out) that occur
      in train, whatever the unit;
    - distinct_2: distinct token bigrams over all token bigrams of the samples, within lines; distinct_2_held_out:
      the same for the held-out lines; each on the first min(len(samples), len(held_out)) lines of its own, as the
      figure falls as text grows; distinct_2_ratio: the first over the second;
    - reverse_ppl_samples: perplexity on held_out of a judge fitted on the samples (Zhao et al. 2018's reverse
      perplexity: high when the samples cover little of the real text, as under mode collapse);
      reverse_ppl_train: the same for a judge fitted on as many train lines drawn at random (numpy Generator
      with `seed`); reverse_ppl_ratio: the first over the second. Both judges share train's vocabulary, so
      their scores are comparable. `reverse_lines` caps how many lines each is fitted on (default: all samples);
    - copied: share of samples that are exactly a line of train;
    - samples, held_out: how many of each were given.

    Figures that are undefined are nan: perplexities of no text, shares of nothing, ratios with an undefined
    part, and the reverse figures when there are no samples, no train lines or no held-out lines.
    """
    tokens = _tokenizer(unit)
    n_order = _order(unit, order)
    train_tokens = [tokens(t) for t in train]
    sample_tokens = [tokens(t) for t in samples]
    held_tokens = [tokens(t) for t in held_out]

    judge = KneserNey.fit(train_tokens, order=n_order)
    ppl_samples = judge.perplexity(sample_tokens)
    ppl_held = judge.perplexity(held_tokens)

    known = {w for t in train for w in words(t)}
    # distinct-2 falls as text grows (more of its bigrams repeat): both counted on as many lines
    shared = min(len(sample_tokens), len(held_tokens)) or len(sample_tokens)
    d2 = _distinct_2(sample_tokens[:shared])
    d2_held = _distinct_2(held_tokens[:shared])

    lines = len(samples) if reverse_lines is None else max(0, min(reverse_lines, len(samples)))
    lines = min(lines, len(train))
    rev_samples, rev_train = _reverse_perplexities(sample_tokens, held_tokens, train_tokens, lines, n_order, seed)

    train_lines = set(train)
    return {
        "judge_ppl_samples": ppl_samples, "judge_ppl_held_out": ppl_held, "judge_ratio": _ratio(ppl_samples, ppl_held),
        "real_words": _real_words(samples, known), "real_words_held_out": _real_words(held_out, known),
        "distinct_2": d2, "distinct_2_held_out": d2_held, "distinct_2_ratio": _ratio(d2, d2_held),
        "reverse_ppl_samples": rev_samples, "reverse_ppl_train": rev_train,
        "reverse_ppl_ratio": _ratio(rev_samples, rev_train),
        "copied": _share(sum(s in train_lines for s in samples), len(samples)),
        "samples": len(samples), "held_out": len(held_out),
    }


def _reverse_perplexities(sample_tokens: list, held_tokens: list, train_tokens: list, lines: int, order: int,
                          seed: int) -> tuple[float, float]:
    """Perplexities on the held-out lines of judges fitted on `lines` samples and on as many train lines drawn at
    random (both with train's vocabulary); nan without lines or held-out lines."""
    if not (lines and held_tokens):
        return float("nan"), float("nan")
    vocabulary = {t for s in train_tokens for t in s}
    picked = np.random.default_rng(seed).choice(len(train_tokens), size=lines, replace=False)
    rev_samples = KneserNey.fit(sample_tokens[:lines], order, vocabulary).perplexity(held_tokens)
    rev_train = KneserNey.fit([train_tokens[i] for i in picked], order, vocabulary).perplexity(held_tokens)
    return rev_samples, rev_train


def path_figures(paths: list[list[str]], train: list[str], judge: KneserNey | None = None,
                 middle: slice = slice(2, 5), held_out: list[str] | None = None, unit: str = "word",
                 order: int | None = None) -> dict:
    """Figures of the middle steps of interpolation paths (each path a list of step texts, the first and last
    its two ends; the default `middle` takes steps 2-4 of a 7-step path). `judge` is a judge fitted on train
    in the same unit, passed in to save refitting; by default one is fitted (order as in `fluency`).

    - judge_ppl_middles, judge_ppl_held_out: the judge's perplexity on the middle steps and on `held_out`
      (required: it is what makes the ratio mean something); judge_ratio: the first over the second;
    - real_words: share of the middle steps' whitespace words that occur in train;
    - new_middles: share of middle steps equal to neither end of their path (a path that jumps straight from
      one end to the other has none);
    - copied: share of middle steps that are exactly a line of train;
    - middles: how many middle steps there are.

    Shares and ratios of nothing are nan.
    """
    if held_out is None:
        raise ValueError("path_figures needs held_out: the judge's perplexity on it is the ratio's denominator")
    tokens = _tokenizer(unit)
    if judge is None:
        judge = KneserNey.fit((tokens(t) for t in train), order=_order(unit, order))
    middles = [(path[0], path[-1], step) for path in paths for step in path[middle]]
    steps = [step for _, _, step in middles]
    ppl_middles = judge.perplexity(tokens(t) for t in steps)
    ppl_held = judge.perplexity(tokens(t) for t in held_out)
    train_lines = set(train)
    return {
        "judge_ppl_middles": ppl_middles,
        "judge_ppl_held_out": ppl_held,
        "judge_ratio": _ratio(ppl_middles, ppl_held),
        "real_words": _real_words(steps, {w for t in train for w in words(t)}),
        "new_middles": _share(sum(step != a and step != b for a, b, step in middles), len(middles)),
        "copied": _share(sum(step in train_lines for step in steps), len(steps)),
        "middles": len(middles),
    }
