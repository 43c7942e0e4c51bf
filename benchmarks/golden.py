"""Golden outputs of a fixed-seed tiny run, to show that a change of structure changed no behaviour.

    python benchmarks/golden.py --write before.json          # before the change
    python benchmarks/golden.py --compare before.json        # after it: exit 1 and a diff if anything moved
    python benchmarks/golden.py --compare before.json -- --lr-schedule constant   # extra train options

Runs the installed `textvae` command on a tiny made-up corpus, one thread, and records: the training
log's figures (times removed), generate (sampling and beam), reconstruct, interpolate, encode,
evaluate --json and bench's configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

WORDS = ("apple banana cherry grape lemon mango melon olive peach pear plum berry almond walnut pecan "
         "river ocean stream brook creek delta marsh swamp harbor island").split()
TINY = ["--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "8", "--batch-size", "16", "--seed", "0"]
TIMES = {"time", "seconds", "chars_per_s", "train_chars_per_s", "kernel_chars_per_s"}


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "textvae", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"textvae {' '.join(args)} failed: {r.stderr.strip()[-500:]}")
    return r.stdout


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMES and k != "model" and k != "file"}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def outputs(extra_train: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rng = random.Random(0)
        items = [rng.choice(WORDS) + rng.choice(["", "s", "ed", "ing", "er"]) for _ in range(400)]
        (d / "tiny.txt").write_text("\n".join(items) + "\n")
        (d / "held.txt").write_text("apples\nrivers\ncherry\nmango\nislanders\n")
        out: dict = {}
        _run(["train", "tiny.txt", "--steps", "60", *TINY, *extra_train], d)
        run = d / "runs" / "tiny"
        out["metrics"] = [_strip(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]
        out["generate"] = _run(["generate", "-n", "20", "--seed", "1"], d).splitlines()
        out["generate_beam"] = _run(["generate", "-n", "5", "--seed", "2", "--strategy", "beam"], d).splitlines()
        out["generate_top_p"] = _run(["generate", "-n", "8", "--seed", "3", "--top-p", "0.8", "-t", "0.7"],
                                     d).splitlines()
        out["reconstruct"] = _run(["reconstruct", "apple", "river", "mangoes"], d).splitlines()
        out["interpolate"] = _run(["interpolate", "apple", "river", "--steps", "5"], d).splitlines()
        _run(["encode", "held.txt", "--out", "codes.jsonl", "--logvar"], d)
        out["encode"] = (d / "codes.jsonl").read_text().splitlines()
        _run(["evaluate", "held.txt", "--samples", "4", "--num-samples", "30", "--json", "eval.json"], d)
        out["evaluate"] = _strip(json.loads((d / "eval.json").read_text()))
        _run(["bench", "--hidden-dim", "16", "--embed-dim", "8", "--latent-dim", "4", "--batch-size", "4",
              "--seq-len", "8", "--steps", "2", "--repeats", "1", "--generate-n", "10", "--no-one-at-a-time",
              "--device", "cpu", "--json", "bench.json"], d)
        out["bench_config"] = json.loads((d / "bench.json").read_text())["config"]
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", help="write the outputs to this JSON file")
    p.add_argument("--compare", help="compare the outputs with this JSON file")
    p.add_argument("extra", nargs="*", help="extra options for `textvae train` (after --)")
    a = p.parse_args()
    got = outputs(a.extra)
    if a.write:
        Path(a.write).write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {a.write}")
    if a.compare:
        want = json.loads(Path(a.compare).read_text())
        moved = [k for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
        for k in moved:
            print(f"{k}: differs\n  before: {json.dumps(want.get(k))[:400]}\n  after:  {json.dumps(got.get(k))[:400]}")
        print("identical" if not moved else f"{len(moved)} of {len(want)} outputs differ")
        sys.exit(1 if moved else 0)


if __name__ == "__main__":
    main()
