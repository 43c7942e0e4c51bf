"""Golden outputs of a fixed-seed tiny run, to show that a change of structure changed no behaviour.

    python benchmarks/golden.py --write before.json          # before the change
    python benchmarks/golden.py --compare before.json        # after it: exit 1 and a diff if anything moved
    python benchmarks/golden.py --compare before.json -- --lr-schedule constant   # extra train options

Runs the installed `textvae` command on a tiny made-up corpus, one thread, and records: the training
log's figures (times removed), generate (sampling and beam), reconstruct, interpolate, encode,
evaluate --json and bench's configuration; then the same verbs on a tiny corpus of short sentences (items of
40 characters or more on average, so the run gets the default learned word prior), a few error lines (bad
input, exit status and the stderr's last line), and what `textvae.load` makes of each checkpoint.
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

WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "olive", "peach", "pear", "plum", "berry",
         "almond", "walnut", "pecan", "river", "ocean", "stream", "brook", "creek", "delta", "marsh", "swamp", "harbor",
         "island"]
TINY = ["--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "8", "--batch-size", "16", "--seed", "0"]
SENTENCE_TINY = ["--embed-dim", "16", "--hidden-dim", "32", "--batch-size", "16", "--seed", "0"]
TIMES = {"time", "seconds", "chars_per_s", "train_chars_per_s", "kernel_chars_per_s"}


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}
# What `textvae.load` makes of a checkpoint: its settings and a figure of every weight (public names only).
LOAD = """
import json, sys, textvae
m = textvae.load(sys.argv[1])
state = m.model.state_dict()
print(json.dumps({"config": m.model.config.to_dict(), "prior": m.prior, "labels": list(m.labels),
                  "vocab": m.tokenizer.itos,
                  "weights": {k: [list(v.shape), round(float(v.double().sum()), 6)] for k, v in state.items()}}))
"""


def _run(args: list[str], cwd: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "textvae", *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        raise SystemExit(f"textvae {' '.join(args)} failed: {r.stderr.strip()[-500:]}")
    return r.stdout


def _error(args: list[str], cwd: Path) -> list:
    """A command that must fail: its exit status and the last line of its stderr."""
    r = subprocess.run([sys.executable, "-m", "textvae", *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                       check=False)
    lines = r.stderr.strip().splitlines()
    return [r.returncode, lines[-1] if lines else ""]


def _loaded(path: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", LOAD, str(path)], env=ENV, capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        raise SystemExit(f"loading {path} failed: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout)


def sentences() -> list[str]:
    """Short made-up sentences of five to nine words (about 45 characters on average)."""
    rng = random.Random(1)
    subjects = ["the river", "a small boat", "my neighbour", "the old harbor", "our island", "a quiet creek"]
    verbs = ["carried", "found", "painted", "watched", "followed", "remembered"]
    objects = ["the ripe peaches", "a basket of plums", "the long delta", "some lemon trees", "a green marsh"]
    ends = ["", " at dawn", " in the rain", " before winter", " near the ocean"]
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(ends)}"
            for _ in range(300)]


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
        out["load"] = _loaded(run / "best.safetensors")
        (d / "empty.txt").write_text("")
        out["errors"] = {
            "generate -n 0": _error(["generate", "-n", "0"], d),
            "generate -t nan": _error(["generate", "-t", "nan"], d),
            "generate --top-p 2": _error(["generate", "--top-p", "2"], d),
            "reconstruct surrogate": _error(["reconstruct", "a\udcffb"], d),
            "evaluate missing": _error(["evaluate", "missing.txt"], d),
            "generate not a checkpoint": _error(["generate", "--model", "held.txt"], d),
            "interpolate --steps 1": _error(["interpolate", "apple", "river", "--steps", "1"], d),
            "generate --label on unlabelled": _error(["generate", "--label", "x"], d),
            "train empty": _error(["train", "empty.txt", "--out", "runs/empty"], d),
        }
        out.update(sentence_outputs(d))
        return out


def sentence_outputs(d: Path) -> dict:
    """The verbs on a run of short sentences: the default learned word prior and a global code."""
    (d / "sent.txt").write_text("\n".join(sentences()) + "\n")
    (d / "sent_held.txt").write_text("the river watched a green marsh at dawn\n"
                                     "a small boat found some lemon trees\nour island followed the long delta\n")
    out: dict = {}
    log = _run(["train", "sent.txt", "--steps", "30", *SENTENCE_TINY], d)
    out["s_chose"] = [line for line in log.splitlines() if "sentences" in line or "prior" in line]
    run = d / "runs" / "sent"
    out["s_metrics"] = [_strip(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out["s_generate"] = _run(["generate", "-n", "12", "--seed", "1"], d).splitlines()
    out["s_generate_greedy"] = _run(["generate", "-n", "4", "--seed", "4", "--greedy"], d).splitlines()
    out["s_generate_beam"] = _run(["generate", "-n", "3", "--seed", "2", "--strategy", "beam"], d).splitlines()
    out["s_reconstruct"] = _run(["reconstruct", "the river watched a green marsh",
                                 "a small boat found some lemon trees"], d).splitlines()
    out["s_interpolate"] = _run(["interpolate", "the river watched a green marsh",
                                 "our island followed the long delta", "--steps", "4"], d).splitlines()
    _run(["encode", "sent_held.txt", "--out", "s_codes.jsonl"], d)
    out["s_encode"] = (d / "s_codes.jsonl").read_text().splitlines()
    _run(["evaluate", "sent_held.txt", "--samples", "3", "--num-samples", "10", "--json", "s_eval.json"], d)
    out["s_evaluate"] = _strip(json.loads((d / "s_eval.json").read_text()))
    out["s_load"] = _loaded(run / "best.safetensors")
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
