"""The held-out report a user asks for with `textvae evaluate`, built from `metrics`.

Likelihood (IW-NLL, Burda et al. 2016), ELBO parts, mutual information and active units, reconstruction
of the items from their posterior means, whether samples are new, and for conditional models whether
samples carry the label they were asked for (judged by a character n-gram classifier).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from .api import Model
from .classifier import NgramClassifier
from .data import DataError, EncodedItems, keep, read_corpus, split_valid
from .metrics import iw_nll, posterior_stats, reconstruction_report, sample_report


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


def evaluate_model(m: Model, items: list[str], samples: int, recon_items: int | None, num_samples: int,
                   train_items, seed: int, on_progress=None, labels=None) -> dict:
    """Every figure `textvae evaluate` reports, as one dict (`labels`: the items' labels, conditional models)."""
    label_ids = None
    if m.conditional:
        label_ids = m.label_ids(labels, len(items)).cpu().numpy()
    data = EncodedItems(items, m.tokenizer, label_ids)
    t0 = time.monotonic()
    out = {"model": str(m.path), "lm": m.model.config.lm, "conditional": m.conditional}
    out.update(iw_nll(m.model, data, samples=samples, seed=seed, progress=on_progress))
    out.update(posterior_stats(m.model, data, seed=seed))
    if not m.model.config.lm:
        k = len(items) if recon_items is None else min(recon_items, len(items))
        subset = items[:k]
        rec = m.reconstruct(subset, label=labels[:k] if m.conditional else None)
        out["reconstruction"] = reconstruction_report(subset, rec)
    if num_samples:
        gen_labels = [labels[i % len(labels)] for i in range(num_samples)] if m.conditional else None
        gen = m.generate(num_samples, seed=seed, label=gen_labels)
        report = sample_report(gen, train_items if train_items is not None else set())
        if train_items is None:
            report.pop("copied"), report.pop("new")
        out["sampling"] = report
    out["seconds"] = time.monotonic() - t0
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
        out["guidance"] = m.resolve_guidance(guidance)
    else:
        pred = clf.predict(m.generate(per_label * max(len(prior), 1), seed=seed))
        shares = Counter(pred)
        out["predicted_label_shares"] = {y: shares.get(y, 0) / len(pred) for y in prior}
    return out
