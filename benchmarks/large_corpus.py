"""Peak memory when training on a corpus of 10 million lines, against the same model on a small corpus.

    python benchmarks/large_corpus.py [--lines 10000000] [--steps 200]

Writes a synthetic corpus (words of corpora/words_en joined in twos and threes, one item a line)
into a temporary folder, then runs `textvae train` on it and on a 50,000-line sample of it, each in
its own process, and reports each process's peak resident memory (ru_maxrss) and their difference:
what the size of the corpus costs beyond the model's own needs. The first run also tokenises the
corpus into the cache (under TEXTVAE_CACHE, a temporary folder here).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def peak_rss_of(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    """Run `cmd` in a child that reports its own peak RSS (MB) once it is done; also the wall time."""
    wrapper = ("import resource, runpy, sys; sys.argv = ['textvae'] + sys.argv[1:]\n"
               "try:\n    runpy.run_module('textvae', run_name='__main__')\n"
               "finally:\n    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    kb = [int(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    if r.returncode != 0 or not kb:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return kb[0] / 1024, wall, r.stderr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json")
    args = ap.parse_args()
    words = (HERE / "corpora" / "words_en" / "train.txt").read_text().split()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        big = d / "big.txt"
        with open(big, "w") as f:
            for start in range(0, args.lines, 100_000):
                f.write("".join(" ".join(rng.choices(words, k=rng.choice((2, 3)))) + "\n"
                                for _ in range(min(100_000, args.lines - start))))
        small = d / "small.txt"
        with open(big) as src, open(small, "w") as dst:
            for i, line in enumerate(src):
                if i >= 50_000:
                    break
                dst.write(line)
        env = {**os.environ, "TEXTVAE_CACHE": str(d / "cache"), "OMP_WAIT_POLICY": "PASSIVE"}
        train = ["train", "--steps", str(args.steps), "--force", "--max-len", "64"]
        small_rss, small_wall, _ = peak_rss_of([*train[:1], str(small), *train[1:], "--out", "r_small"], env, d)
        big_rss, big_wall, err = peak_rss_of([*train[:1], str(big), *train[1:], "--out", "r_big"], env, d)
        again_rss, again_wall, _ = peak_rss_of([*train[:1], str(big), *train[1:], "--out", "r_big2"], env, d)
        result = {"lines": args.lines, "file_mb": big.stat().st_size / 2**20, "steps": args.steps,
                  "small_corpus_peak_rss_mb": small_rss, "big_corpus_peak_rss_mb": big_rss,
                  "big_corpus_cached_peak_rss_mb": again_rss, "difference_mb": big_rss - small_rss,
                  "big_first_run_s": big_wall, "big_cached_run_s": again_wall, "small_run_s": small_wall}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
