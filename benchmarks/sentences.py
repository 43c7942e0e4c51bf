"""What a user sees of a trained model, on sentences or anything else: the figures of the sentence issue.

    python benchmarks/sentences.py runs/reviews                  # held-out items: the run's validation split
    python benchmarks/sentences.py runs/reviews --data test.txt  # or a file
    python benchmarks/sentences.py runs/reviews --json out.json
    python benchmarks/sentences.py runs/reviews --device cuda     # decode on a GPU

Prints, with a few examples of each:
- the real-word rate of 200 samples at temperature 1 (share of their words found in the training text), and
  the same for the held-out items themselves, for scale;
- the runaway rate of greedy decodings of 200 prior codes (they reach the length limit, or repeat a three-word
  sequence three times);
- held-out reconstruction (the default decoding, beam search): exact rate and character accuracy
  (1 - edit distance / length), on up to 500 items;
- interpolation between 10 pairs of held-out items, 7 steps: endpoint fidelity, edit distance between
  consecutive steps, real words and per-character IW-NLL of the middle steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import textvae
from textvae.data import held_out_items, read_corpus, training_items
from textvae.evaluate import interpolation_report, reconstruction_runaway
from textvae.metrics import is_runaway, real_word_rate, reconstruction_report


def figures(m, held: list[str], words, samples: int = 200, codes: int = 200, recon: int = 500, pairs: int = 10,
            seed: int = 0) -> dict:
    t0 = time.monotonic()
    gen = m.generate(samples, seed=seed)
    greedy = m.generate(codes, seed=seed + 1, strategy="greedy")
    subset = held[pairs * 2:pairs * 2 + recon]                  # the first items make the interpolation pairs
    rec = m.reconstruct(subset)
    out = {
        "samples": {"n": samples, "real_words": real_word_rate(gen, words), "examples": gen[:5],
                    "empty": sum(not t for t in gen)},
        "held_out_real_words": real_word_rate(held, words),
        "greedy_prior": {"n": codes, "runaway": sum(is_runaway(t, m.default_max_len) for t in greedy) / codes,
                         "examples": greedy[:3]},
        "reconstruction": {**reconstruction_report(subset, rec), "n": len(subset),
                           "runaway": reconstruction_runaway(m, subset, rec),
                           "examples": list(zip(subset[:3], rec[:3]))},
        "interpolation": interpolation_report(m, held, None, pairs, words, seed),
        "example_path": m.interpolate(held[0], held[1], steps=7),
    }
    out["seconds"] = time.monotonic() - t0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--data", help="held-out items [default: the run's validation split]")
    p.add_argument("--recon", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    a = p.parse_args()
    from textvae.train import pick_device
    m = textvae.load(a.run, device=str(pick_device(a.device)))
    held = read_corpus(a.data, unit=m.run.data.unit).items if a.data else held_out_items(m.run.data)[0]
    held = [t for t in held if len(t) <= m.max_len]
    words = m.words if m.words is not None else {w for t in training_items(m.run.data) or () for w in t.split()}
    if not words:
        sys.exit("the run carries no word list and its corpus is not at hand")
    r = figures(m, held, words, recon=a.recon, seed=a.seed)
    s, g, rec, i = r["samples"], r["greedy_prior"], r["reconstruction"], r["interpolation"]
    print(f"model {a.run}: {len(held):,} held-out items")
    print(f"real words in {s['n']} samples (temperature 1): {s['real_words']:.1%}   held-out text: "
          f"{r['held_out_real_words']:.1%}   empty samples: {s['empty']}")
    for t in s["examples"]:
        print(f"    {t}")
    print(f"greedy decodings of {g['n']} prior codes that run away: {g['runaway']:.1%}")
    for t in g["examples"]:
        print(f"    {t}")
    print(f"reconstruction of {rec['n']} held-out items: exact {rec['exact']:.1%}, character accuracy "
          f"{rec['char_accuracy']:.1%}, mean edit distance {rec['edit_distance']:.1f}, runaway {rec['runaway']:.1%}")
    for x, y in rec["examples"]:
        print(f"    {x}\n -> {y}")
    print(f"interpolation, {i['pairs']} pairs x {i['steps']} steps: endpoint fidelity {i['endpoint_fidelity']:.1%}, "
          f"edit distance between steps {i['step_edit_distance']:.1f}, middle steps: real words "
          f"{i.get('middle_real_words', float('nan')):.1%}, IW-NLL {i.get('middle_nats_per_char', float('nan')):.3f} "
          "nats/char")
    for t in r["example_path"]:
        print(f"    {t}")
    print(f"({r['seconds']:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
