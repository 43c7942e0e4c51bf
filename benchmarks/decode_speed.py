"""A decoding step on the CPU: the model's own step in torch against its numpy twin (`textvae.decoding.arraystep`).

    python benchmarks/decode_speed.py runs/sentences_en
    python benchmarks/decode_speed.py runs/words_en --rows 1 7 64 256

For each batch size, the median time of one greedy decoding step of prior codes: torch on one thread, torch on
every thread, and numpy (whose BLAS picks its own threads); then the median time of a whole greedy decoding of
7 codes and of a sampled one of 256 codes as the API runs them (numpy on the CPU). Run it on an otherwise idle
machine, with OMP_WAIT_POLICY=PASSIVE as the README's figures were.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import textvae
from textvae.data.tokenizer import BOS_ID
from textvae.decoding.arraystep import ArraySteps


def step_time(net, code: torch.Tensor, steps: int, numpy: bool) -> float:
    """Median seconds of one step of `net` over `steps` steps from the codes' first state."""
    state = net.initial_state(code)
    inputs = torch.full((code.shape[0],), BOS_ID)
    inputs = inputs.numpy() if numpy else inputs
    net.step(code, inputs, state)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        net.step(code, inputs, state)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="run directory or checkpoint")
    p.add_argument("--rows", type=int, nargs="+", default=[1, 7, 32, 128, 256, 512])
    p.add_argument("--steps", type=int, default=50, help="steps timed per figure")
    args = p.parse_args()

    m = textvae.load(args.model)
    threads = torch.get_num_threads()
    print(f"model {m.path}: {m.model.config.cell} of {m.model.config.hidden_dim}, "
          f"{m.model.config.slots or 'no'} slots; torch threads {threads}")
    print(f"{'rows':>6} {'torch, 1 thread':>16} {f'torch, {threads} threads':>17} {'numpy':>10} "
          f"{'numpy / torch 1':>16}")
    arrays = ArraySteps.of(m.model)
    with torch.no_grad():
        for rows in args.rows:
            code = m.model.condition(m.sample_prior(rows, seed=0),
                                     m.decoder.label_ids(m.labels[0], rows) if m.conditional else None)
            figures = []
            for n in (1, threads):
                torch.set_num_threads(n)
                figures.append(step_time(m.model, code, args.steps, numpy=False))
            torch.set_num_threads(threads)
            figures.append(step_time(arrays, code, args.steps, numpy=True))
            print(f"{rows:>6} {figures[0] * 1e6:>13,.0f} us {figures[1] * 1e6:>14,.0f} us "
                  f"{figures[2] * 1e6:>7,.0f} us {figures[2] / figures[0]:>16.2f}")

    label = {"label": m.labels[0]} if m.conditional else {}
    texts = m.generate(2, seed=0, strategy="greedy", **label)              # two items of the model's own

    def median_of(f, n: int = 7) -> float:
        times = []
        for k in range(n):
            start = time.perf_counter()
            f(k)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    path = median_of(lambda k: m.interpolate(texts[0], texts[-1], steps=7, strategy="greedy", **label))
    many = median_of(lambda k: m.generate(256, seed=k, **label), 3)
    print(f"a greedy path of 7 steps between two items: {path * 1000:,.0f} ms; 256 sampled items: "
          f"{many * 1000:,.0f} ms (median)")


if __name__ == "__main__":
    main()
