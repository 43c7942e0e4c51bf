"""Train with the defaults and with the earlier defaults, then evaluate each on the test split: the table of
the training-budget issue (wall time, steps, test IW-NLL, estimated against real time).

    python benchmarks/train_defaults.py corpora/names_en corpora/words_en            # VAE and LM, both schedules
    python benchmarks/train_defaults.py corpora/names_en --only new --models lm       # a subset
    python benchmarks/train_defaults.py corpora/names_en --extra "--batch-size 32"   # a variant of the new defaults
    python benchmarks/train_defaults.py corpora/sentences_en --earlier-extra "--minutes 15"  # the earlier, same time

"earlier" is `--lr-schedule constant`, which reproduces the earlier behaviour bit for bit (10 epochs of
batches of 128 at a constant learning rate). Each run is a fresh `textvae train` process, one at a time;
run nothing else meanwhile. Runs go to runs/defaults/<corpus>-<model>-<schedule>[-<tag>].
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def textvae(*args: str, capture: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "textvae", *args], env=env, capture_output=capture, text=True)


def one(corpus: str, model: str, schedule: str, extra: list[str], tag: str, samples: int) -> dict:
    name = Path(corpus).name
    out = Path("runs/defaults") / f"{name}-{model}-{schedule}{'-' + tag if tag else ''}"
    args = ["train", corpus, "--out", str(out), "--force", *extra]
    if model == "lm":
        args.append("--lm")
    if schedule == "earlier":
        args += ["--lr-schedule", "constant"]
    t0 = time.monotonic()
    r = textvae(*args)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"textvae {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    estimate = next((line for line in r.stderr.splitlines() if line.startswith("budget:")), "")
    run = json.loads((out / "run.json").read_text())
    epochs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in x]
    e = textvae("evaluate", f"{corpus}/test.txt", "--model", str(out), "--samples", str(samples),
                "--num-samples", "200", "--recon-items", "500", "--json", str(out / "test.json"))
    if e.returncode != 0:
        raise SystemExit(f"evaluate {out} failed:\n{e.stderr[-2000:]}")
    test = json.loads((out / "test.json").read_text())
    plan = run.get("plan") or {}
    return {"corpus": name, "model": model, "schedule": schedule, "tag": tag, "command": "textvae " + shlex.join(args),
            "wall_s": wall, "train_s": epochs[-1]["time"] if epochs else None, "steps": plan.get("total_steps"),
            "batch": run["train_config"]["batch_size"], "estimate_s": plan.get("estimate_s"), "why": plan.get("why"),
            "budget_line": estimate, "test_iw_nats_per_char": test["iw_nats_per_char"],
            "exact": (test.get("reconstruction") or {}).get("exact"), "valid_last": epochs[-1]["nats_per_char"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpora", nargs="+")
    p.add_argument("--models", default="vae,lm")
    p.add_argument("--only", choices=["new", "earlier"])
    p.add_argument("--extra", default="", help="more options for the new-defaults run")
    p.add_argument("--earlier-extra", default="", help="more options for the earlier-defaults run (e.g. --minutes 15)")
    p.add_argument("--tag", default="")
    p.add_argument("--samples", type=int, default=100, help="importance samples for the test IW-NLL")
    p.add_argument("--json", default="runs/defaults/results.jsonl")
    a = p.parse_args()
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    print("| corpus | model | schedule | steps (batch) | estimated | wall time | test IW-NLL nats/char | exact |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for corpus in a.corpora:
        for model in a.models.split(","):
            for schedule in ("earlier", "new"):
                if a.only and schedule != a.only:
                    continue
                extra = shlex.split(a.extra if schedule == "new" else a.earlier_extra)
                r = one(corpus, model, schedule, extra, a.tag if schedule == "new" else "", a.samples)
                with open(a.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
                est = f"{r['estimate_s'] / 60:.1f} min" if r["estimate_s"] else "–"
                exact = f"{r['exact']:.1%}" if r["exact"] is not None else "–"
                print(f"| {r['corpus']} | {model} | {schedule}{' ' + r['tag'] if r['tag'] else ''} | "
                      f"{r['steps']:,} ({r['batch']}) | {est} | {r['train_s'] / 60:.1f} min | "
                      f"{r['test_iw_nats_per_char']:.4f} | {exact} |", flush=True)


if __name__ == "__main__":
    main()
