"""The held-out report a user asks for with `textvae evaluate`, built from `metrics`.

Likelihood (IW-NLL, Burda et al. 2016), ELBO parts, mutual information and active units, reconstruction
of the items from their posterior means, whether samples are new, and for conditional models whether
samples carry the label they were asked for (judged by a character n-gram classifier).
"""

from __future__ import annotations

import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

from ..api import Model
from ..data.corpus import DataError, keep, read_corpus, split_valid
from ..data.items import EncodedItems
from ..data.prepare import held_out_items
from .classifier import NgramClassifier
from .judge import fluency, path_figures
from .metrics import (
    char_accuracy,
    edit_distance,
    is_runaway,
    iw_nll,
    posterior_stats,
    real_word_rate,
    reconstruction_report,
    sample_report,
)


def items_to_evaluate(m: Model, path: str, column: str | None, unit: str | None, max_len: int | None,
                      limit: int | None, label_column: str | None = None, judged_labels=None):
    """Items of `path` (and their labels) to evaluate `m` on, read as the model's training items were unless
    told otherwise; items whose label the model (or the judge's `judged_labels`) does not know are left out."""
    corpus = read_corpus(path, unit=unit or m.run.data.unit, column=column, max_len=max_len or m.run.data.max_len,
                         label_column=label_column)
    items, labels = corpus.items, corpus.labels
    if labels is not None:
        known = set(m.labels) if m.conditional else set(judged_labels or ())
        items, labels = keep(items, labels, lambda y: y in known)
    if limit:
        items, labels = items[:limit], (labels[:limit] if labels is not None else None)
    if not items:
        raise DataError(f"no items of {path} to evaluate")
    return items, labels


def map_items(m: Model, data: str | None = None, column: str | None = None, label_column: str | None = None,
              limit: int = 3000) -> tuple[list[str], list[str] | None, str]:
    """Held-out items to map (with their labels, and where they came from in words): those of the file `data`,
    else the run's validation items. A conditional model keeps the items whose label it knows; items over the
    model's length limit are left out."""
    label_column = label_column or m.run.data.label_column
    if data:
        corpus = read_corpus(data, unit=m.run.data.unit, column=column, label_column=label_column)
        items, labels, source = corpus.items, corpus.labels, Path(data).name
    else:
        items, labels = held_out_items(m.run.data, label_column)
        source = "the run's validation items"
    if m.conditional:                               # a conditional model encodes each item under its label
        if not labels:
            raise DataError(f"this model is conditional: the items to map need their label column {label_column!r}")
        items, labels = keep(items, labels, lambda y: y in m.labels)
    index = [i for i, t in enumerate(items) if len(t) <= m.max_len][:limit]
    items, labels = [items[i] for i in index], (None if labels is None else [labels[i] for i in index])
    if not items:
        raise DataError(f"no items of {source} to map")
    return items, labels, source


def label_judge(models: list[Model], label_column: str, seed: int) -> NgramClassifier:
    """The n-gram classifier that judges labels, trained on the (first labelled) model's training split."""
    m = next((x for x in models if x.conditional), models[0])
    data = m.run.data
    if not data.corpus or (not data.corpus.startswith("hf:") and not Path(data.corpus).is_file()):
        raise DataError("judging labels needs the model's training corpus, which is not at hand")
    corpus = read_corpus(data.corpus, unit=data.unit, column=data.column,
                         label_column=data.label_column or label_column)
    if data.valid:
        items, labels = corpus.items, corpus.labels
    else:
        items, _, labels, _ = split_valid(corpus.items, labels=corpus.labels)
    items, labels = keep(items, labels, bool)
    return NgramClassifier.fit(items, labels, seed=seed)


def reconstruction_runaway(m: Model, texts: list[str], rec: list[str]) -> float:
    """The share of reconstructions `rec` of `texts` that ran away: reached their text's length limit
    (`Decoder.length_limit`), or repeat a 3-word sequence three times."""
    return sum(is_runaway(r, m.decoder.length_limit(len(t))) for t, r in zip(texts, rec)) / max(len(rec), 1)


def judge_unit(items: list[str]) -> str:
    """How the outside judge reads items: by words for sentences (40 characters or more on average, as training
    decides), else by characters (words, names)."""
    return "word" if items and sum(map(len, items)) / len(items) >= 40 else "char"


def evaluate_model(m: Model, items: list[str], samples: int, recon_items: int | None, num_samples: int,
                   train_items, seed: int, on_progress=None, labels=None, pairs: int = 10,
                   greedy_codes: int = 200, judge_train: list[str] | None = None) -> dict:
    """Every figure `textvae evaluate` reports, as one dict (`labels`: the items' labels, conditional models).

    Beside the likelihood: what a user sees of a VAE (real words in samples, runaway greedy decodings of prior
    codes, reconstruction, and interpolation paths between `pairs` pairs of the items); with the training split
    `judge_train`, how an outside judge (`judge.fluency`, an n-gram model fitted on it) reads the samples and the
    paths' middle steps beside the held-out `items`."""
    label_ids = None
    if m.conditional:
        label_ids = m.decoder.label_ids(labels, len(items)).cpu().numpy()
    data = EncodedItems(items, m.tokenizer, label_ids)
    t0 = time.monotonic()
    out = {"model": str(m.path), "lm": m.model.config.lm, "conditional": m.conditional}
    out.update(iw_nll(m.model, data, samples=samples, seed=seed, progress=on_progress))
    out.update(posterior_stats(m.model, data, seed=seed))
    if not m.model.config.lm and recon_items != 0:
        k = len(items) if recon_items is None else min(recon_items, len(items))
        subset = items[:k]
        rec = m.reconstruct(subset, label=labels[:k] if m.conditional else None)
        out["reconstruction"] = {**reconstruction_report(subset, rec),
                                 "runaway": reconstruction_runaway(m, subset, rec)}
    words = m.words if m.words is not None else _words_of(train_items)
    label_of = (lambda n: [labels[i % len(labels)] for i in range(n)]) if m.conditional else (lambda n: None)
    if num_samples:
        gen = m.generate(num_samples, seed=seed, label=label_of(num_samples))
        report = sample_report(gen, train_items if train_items is not None else set())
        if train_items is None:
            report.pop("copied"), report.pop("new")
        if words is not None:
            report["real_words"] = real_word_rate(gen, words)
        out["sampling"] = report
        if judge_train:
            out["fluency"] = fluency(gen, items, judge_train, seed=seed, unit=judge_unit(items))
    if not m.model.config.lm:
        if greedy_codes:
            greedy = m.generate(greedy_codes, seed=seed + 1, strategy="greedy", label=label_of(greedy_codes))
            out["greedy_prior"] = {"codes": greedy_codes,
                                   "runaway": sum(is_runaway(t, m.default_max_len) for t in greedy) / greedy_codes}
            if words is not None:
                out["greedy_prior"]["real_words"] = real_word_rate(greedy, words)
        if pairs and len(items) >= 2:
            out["interpolation"] = interpolation_report(m, items, labels, pairs, words, seed, judge_train=judge_train)
    out["seconds"] = time.monotonic() - t0
    return out


def _words_of(train_items) -> set[str] | None:
    return None if train_items is None else {w for t in train_items for w in t.split()}


def interpolation_report(m: Model, items: list[str], labels, pairs: int, words, seed: int, steps: int = 7,
                         judge_train: list[str] | None = None, keep_paths: bool = False) -> dict:
    """Paths between `pairs` pairs of items (items 0 and 1, 2 and 3, ...): how close the first and last steps
    come to the two items (endpoint fidelity: mean character accuracy), how far apart consecutive steps are
    (smoothness: mean edit distance), and how fluent the steps in between are (their real-word rate, and their
    per-character NLL under the model, an importance-weighted bound with K = 10). With the training split
    `judge_train`, the outside judge's figures of the middle steps (`judge.path_figures`: of a 7-step path, steps
    2-4) beside the held-out `items`."""
    n = min(pairs, len(items) // 2)
    ends, gaps, middles, paths = [], [], [], []
    for i in range(n):
        a, b = items[2 * i], items[2 * i + 1]
        la = labels[2 * i] if m.conditional else None
        path = m.interpolate(a, b, steps=steps, label=la)
        paths.append(path)
        ends.append((char_accuracy(a, path[0]) + char_accuracy(b, path[-1])) / 2)
        gaps.extend(edit_distance(x, y) for x, y in pairwise(path))
        middles.extend(path[1:-1])
    middle = [t for t in middles if t]
    out = {"pairs": n, "steps": steps, "endpoint_fidelity": sum(ends) / max(n, 1),
           "step_edit_distance": sum(gaps) / max(len(gaps), 1), "middle_steps": len(middles)}
    if judge_train and paths:
        inner = slice(max(1, (steps - 3) // 2), max(1, (steps - 3) // 2) + 3)         # steps 2-4 of 7: the middle
        out["judge"] = path_figures(paths, judge_train, held_out=items, unit=judge_unit(items), middle=inner)
    if keep_paths:
        out["paths"] = paths
    if words is not None:
        out["middle_real_words"] = real_word_rate(middle, words)
    if middle and not m.conditional:
        nll = iw_nll(m.model, EncodedItems(middle, m.tokenizer), samples=10, seed=seed)
        out["middle_nats_per_char"] = nll["iw_nats_per_char"]
    return out


def label_report(m: Model, clf: NgramClassifier, items, labels, per_label: int, seed: int,
                 guidance: float | None = None) -> dict:
    """How well generation follows labels, judged by `clf`: agreement for a conditional model, the shares of
    predicted labels for an unconditional one (which should sit near the class prior)."""
    prior = {y: n / len(labels) for y, n in sorted(Counter(labels).items())}
    out = {"classifier_accuracy": clf.accuracy(items, labels), "class_prior": prior}
    if m.conditional:
        by_label = {}
        for i, y in enumerate(m.labels):
            pred = clf.predict(m.generate(per_label, seed=seed + i, label=y, guidance=guidance))
            by_label[y] = sum(p == y for p in pred) / per_label
        out["label_agreement_by_label"] = by_label
        out["label_agreement"] = sum(by_label.values()) / len(by_label)
        out["guidance"] = m.decoder.resolve_guidance(guidance)
    else:
        pred = clf.predict(m.generate(per_label * max(len(prior), 1), seed=seed))
        shares = Counter(pred)
        out["predicted_label_shares"] = {y: shares.get(y, 0) / len(pred) for y in prior}
    return out
