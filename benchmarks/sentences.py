"""What a user sees of a trained model, judged from outside the model: the figures of the issues "Every point a
sentence" and "Words and names" (for items under 40 characters on average, the judge reads characters: a
5-gram model).

    python benchmarks/sentences.py runs/reviews                   # held-out items: the run's validation split
    python benchmarks/sentences.py runs/reviews --data test.txt   # or a file
    python benchmarks/sentences.py runs/sentences_en --probe corpora/sentences_en --json out.json
    python benchmarks/sentences.py runs/reviews --device cuda      # decode on a GPU

The judge is a word-trigram model with interpolated Kneser-Ney smoothing fitted on the run's training split
(`textvae.evaluation.judge`); its perplexity on some texts is divided by its perplexity on held-out real text (real text 1.0;
the same text with its words shuffled in each line several times more). Prints, with examples of each:
- samples (the default decoding of `generate`): the judge's ratio, the share of their words found in the training
  text (and the held-out text's, for scale), distinct-2 against the held-out text's, reverse perplexity (a judge
  fitted on the samples scores held-out text, against one fitted on as many training lines), copies of training
  lines (and among the model's own draws, before `generate` draws copies again), empty and runaway samples
  (they reach the length limit, or repeat a three-word sequence three times);
- greedy decodings of prior codes that run away;
- paths between 40 pairs of held-out items, 7 steps each (the default decoding of `interpolate`): the judge's
  ratio of the middle steps (2-4), their real words, the share equal to neither end, copies of training lines,
  and the endpoints' character accuracy; three paths printed in full;
- reconstruction of held-out items (the default, beam search): exact rate and character accuracy;
- the map: the share of the variance of what it plots along its first two principal components;
- with --probe FOLDER (a corpus folder with train.tsv and test.tsv holding `text` and a label column), a linear
  probe (logistic regression on the map's codes, on them and the sum of the slots, and on the whole code; its L2
  weight chosen on a fifth of them) trained on 10,000 training items and scored on the test items' labels:
  balanced accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import textvae
from textvae.data.corpus import read_corpus
from textvae.data.prepare import held_out_items, training_split
from textvae.evaluation.judge import fluency
from textvae.evaluation.metrics import is_runaway, principal_plane, reconstruction_report
from textvae.evaluation.report import interpolation_report, judge_unit, reconstruction_runaway


def probe(m, folder: str, column: str = "source", items: int = 10_000, seed: int = 0) -> dict:
    """Balanced accuracy on test.tsv of logistic regressions on `items` training items' codes (train.tsv): on what
    the map plots (`Model.map_codes`: a word-prior model's global code), for a code of slots on that and the sum
    of the slots beside it (a linear map of the whole code), and on the whole code."""
    train = read_corpus(str(Path(folder) / "train.tsv"), column="text", label_column=column)
    test = read_corpus(str(Path(folder) / "test.tsv"), column="text", label_column=column)
    rng = np.random.default_rng(seed)
    fits = [i for i, t in enumerate(train.items) if len(t) <= m.max_len]
    pick = [fits[i] for i in rng.permutation(len(fits))[:items]]
    names = sorted(set(train.labels))
    keep = [i for i, y in enumerate(test.labels) if y in names and len(test.items[i]) <= m.max_len]
    z_train, z_test = m.encode([train.items[i] for i in pick]), m.encode([test.items[i] for i in keep])
    y_train = np.array([names.index(train.labels[i]) for i in pick])
    y_test = np.array([names.index(test.labels[i]) for i in keep])
    c = m.model.config
    views = {"map": m.map_codes}
    if c.slots:
        width = c.slots * c.slot_dim
        views["map and the sum of the slots"] = lambda z: np.c_[m.map_codes(z), z[:, :width].reshape(
            len(z), c.slots, -1).sum(axis=1)] if c.global_dim else z[:, :width].reshape(len(z), c.slots, -1).sum(axis=1)
        views["whole code"] = lambda z: z
    out = {"train_items": len(pick), "test_items": len(keep)}
    fifth = rng.permutation(len(pick)) < len(pick) // 5          # the training items that choose the L2 weight
    for name, view in views.items():
        x_train, x_test = view(z_train), view(z_test)
        mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-3
        x_train, x_test = (x_train - mean) / scale, (x_test - mean) / scale
        l2 = max(PROBE_L2, key=lambda a: balanced_accuracy(
            logistic_regression(x_train[~fifth], y_train[~fifth], len(names), l2=a), x_train[fifth], y_train[fifth],
            names)[0])
        acc, recalls = balanced_accuracy(logistic_regression(x_train, y_train, len(names), l2=l2), x_test, y_test, names)
        out[name] = {"balanced_accuracy": acc, "recall": recalls, "features": int(x_train.shape[1]), "l2": l2}
    return out


PROBE_L2 = (1e-4, 1e-3, 1e-2, 1e-1)     # the probe's L2 weights, one chosen on a fifth of the training items


def balanced_accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray, names: list[str]) -> tuple[float, dict]:
    """The mean of the classes' recalls of the regression `w` on standardised features x, and the recalls."""
    pred = np.argmax(np.c_[x, np.ones(len(x))] @ w, axis=1)
    recalls = {names[k]: float((pred[y == k] == k).mean()) for k in range(len(names)) if (y == k).any()}
    return float(np.mean(list(recalls.values()))), recalls


def logistic_regression(x: np.ndarray, y: np.ndarray, classes: int, l2: float = 1e-3, steps: int = 1000,
                        lr: float = 0.5) -> np.ndarray:
    """Weights (features + 1, classes) of a softmax regression, each class weighted by the inverse of its
    frequency, fitted by gradient descent on standardised features."""
    x = np.c_[x, np.ones(len(x))]
    onehot = np.eye(classes)[y]
    weight = (len(y) / (classes * np.bincount(y, minlength=classes).clip(min=1)))[y][:, None]
    w = np.zeros((x.shape[1], classes))
    for _ in range(steps):
        logits = x @ w
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        w -= lr * (x.T @ ((p - onehot) * weight) / len(y) + l2 * w)
    return w


def figures(m, held: list[str], train: list[str], samples: int = 1000, codes: int = 200, recon: int = 500,
            pairs: int = 40, seed: int = 0) -> dict:
    t0 = time.monotonic()
    gen = m.generate(samples, seed=seed)
    drawn = m.generate(samples, seed=seed, new=False)              # the model's own draws, before copies are redrawn
    seen = set(train)
    greedy = m.generate(codes, seed=seed + 1, strategy="greedy")
    paths = interpolation_report(m, held, None, pairs, m.words, seed, judge_train=train, keep_paths=True)
    subset = held[pairs * 2:pairs * 2 + recon]                  # the first items make the interpolation pairs
    rec = m.reconstruct(subset)
    mu = m.map_codes(m.encode(held[:2000]))
    unit = judge_unit(held)
    ends = [(p[0] == held[2 * i], p[-1] == held[2 * i + 1]) for i, p in enumerate(paths["paths"])]
    paths["both_ends_exact"] = sum(a and b for a, b in ends) / max(len(ends), 1)
    out = {
        "unit": unit,
        "samples": {**fluency(gen, held, train, seed=seed, unit=unit),
                    "empty": sum(not t for t in gen) / len(gen),
                    "copied_drawn": sum(t in seen for t in drawn) / len(drawn),
                    "runaway": sum(is_runaway(t, m.default_max_len) for t in gen) / len(gen), "examples": gen[:10]},
        "greedy_prior": {"n": codes, "runaway": sum(is_runaway(t, m.default_max_len) for t in greedy) / codes,
                         "examples": greedy[:3]},
        "paths": paths,
        "reconstruction": {**reconstruction_report(subset, rec), "n": len(subset),
                           "runaway": reconstruction_runaway(m, subset, rec),
                           "examples": list(zip(subset[:3], rec[:3]))},
        "map": {"items": len(mu), "variance_2": float(principal_plane(mu)[3].sum()), "dims": int(mu.shape[1])},
    }
    out["seconds"] = time.monotonic() - t0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--data", help="held-out items [default: the run's validation split]")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=40)
    p.add_argument("--recon", type=int, default=500)
    p.add_argument("--probe", metavar="FOLDER", help="a corpus folder with train.tsv and test.tsv (text, source)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    a = p.parse_args()
    from textvae.training.trainer import pick_device
    m = textvae.load(a.run, device=str(pick_device(a.device)))
    held = read_corpus(a.data, unit=m.run.data.unit).items if a.data else held_out_items(m.run.data)[0]
    held = [t for t in held if len(t) <= m.max_len]
    train = training_split(m.run.data)
    if not train:
        sys.exit("the run's training corpus is not at hand: the judge is fitted on it")
    r = figures(m, held, train, samples=a.samples, recon=a.recon, pairs=a.pairs, seed=a.seed)
    if a.probe:
        r["probe"] = probe(m, a.probe, seed=a.seed)
    s, g, rec, paths, judged = r["samples"], r["greedy_prior"], r["reconstruction"], r["paths"], r["paths"]["judge"]
    print(f"model {a.run}: {len(held):,} held-out items; the judge ({r['unit']} n-grams) fitted on {len(train):,} "
          "training items")
    print(f"prior: {m.prior}")
    print(f"samples ({s['samples']}): judge {s['judge_ratio']:.2f}x held-out text's perplexity; real words "
          f"{s['real_words']:.1%} (held-out text {s['real_words_held_out']:.1%}); distinct-2 {s['distinct_2_ratio']:.2f}x "
          f"held-out's; reverse perplexity {s['reverse_ppl_ratio']:.2f}x training text's; copied {s['copied']:.1%} "
          f"(of the model's draws before copies are drawn again: {s['copied_drawn']:.1%}); "
          f"empty {s['empty']:.1%}; runaway {s['runaway']:.1%}")
    for t in s["examples"]:
        print(f"    {t}")
    print(f"greedy decodings of {g['n']} prior codes that run away: {g['runaway']:.1%}")
    print(f"paths ({paths['pairs']} pairs x {paths['steps']} steps), middle steps: judge {judged['judge_ratio']:.2f}x; "
          f"real words {judged['real_words']:.1%}; equal to neither end {judged['new_middles']:.1%}; copied "
          f"{judged['copied']:.1%}; endpoint fidelity {paths['endpoint_fidelity']:.1%}, both ends exact "
          f"{paths['both_ends_exact']:.1%}")
    for path in paths["paths"][:3]:
        for i, t in enumerate(path):
            print(f"    {i / (len(path) - 1):.2f}  {t}")
        print()
    print(f"reconstruction of {rec['n']} held-out items: exact {rec['exact']:.1%}, character accuracy "
          f"{rec['char_accuracy']:.1%}, mean edit distance {rec['edit_distance']:.1f}, runaway {rec['runaway']:.1%}")
    for x, y in rec["examples"]:
        print(f"    {x}\n -> {y}")
    print(f"map of {r['map']['items']:,} held-out codes ({r['map']['dims']} dimensions): the first two principal "
          f"components hold {r['map']['variance_2']:.1%} of the variance")
    if "probe" in r:
        pr = r["probe"]
        for name, v in pr.items():
            if isinstance(v, dict):
                print(f"linear probe on the {name} ({v['features']} features), {pr['train_items']:,} training items "
                      f"-> {pr['test_items']:,} test items: balanced accuracy {v['balanced_accuracy']:.1%} "
                      f"({', '.join(f'{k} {x:.1%}' for k, x in v['recall'].items())}; L2 {v['l2']:g})")
    print(f"({r['seconds']:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
