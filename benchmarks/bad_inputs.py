"""Try every kind of bad input on the real command line and print what a user sees, as a Markdown table.

    python benchmarks/bad_inputs.py            # every case, a few minutes on 2 CPU cores
    python benchmarks/bad_inputs.py --fast     # only the cases that take seconds

Each row: the input, the command, the last line the user sees on stderr (or, for a streamed result, how
soon its first line came), the exit code, and whether a Python traceback appeared (it never should).
A case that reaches the catch-all "unexpected ..." line, or that exits otherwise than its case expects (a
number that is not finite, a text that is not Unicode: refused, exit 2), is a bug: the script then exits
with status 1.
`tests/test_bad_inputs.py` runs the fast cases in-process.
"""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = ["--steps", "5", "--embed-dim", "8", "--hidden-dim", "16", "--latent-dim", "4", "--batch-size", "8"]


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def make_files(d: Path) -> None:
    """The inputs the cases use (the trained model `run` is made by the caller)."""
    (d / "empty.txt").write_text("")
    (d / "spaces.txt").write_text("   \n\t\n  \n")
    (d / "latin1.txt").write_bytes("ok\ncaf\xe9 au lait\n".encode("latin-1"))
    (d / "nul.txt").write_bytes(b"abc\x00def\nghi\n")
    (d / "mixed.txt").write_bytes(b"one\r\ntwo\rthree\nfour\n")
    (d / "t.csv").write_text("a,b\n1,2\n")
    (d / "adir").mkdir(exist_ok=True)
    (d / "fake.safetensors").write_text("not a checkpoint")
    (d / "bomb").mkdir(exist_ok=True)
    for name in ("best.safetensors", "model.pt"):
        (d / "bomb" / name).write_bytes(pickle.dumps(Payload()))
    (d / "ro").mkdir(exist_ok=True)
    os.chmod(d / "ro", stat.S_IRUSR | stat.S_IXUSR)
    (d / "items.txt").write_text("word1\nword2\nword3\n")
    (d / "big_line.txt").write_text("word1\nword2\n" + "x" * 5_000_000 + "\nword3\n")
    (d / "readonly.npy").write_bytes(b"old")
    os.chmod(d / "readonly.npy", stat.S_IRUSR)
    (d / "surrogate.jsonl").write_text('{"text": "word1"}\n{"text": "wo\\ud800rd2"}\n')


def make_model_files(d: Path) -> None:
    """Damaged copies of the trained model `run`: cut short, and with a tensor of another shape than its
    configuration implies (which `generate` reads without torch)."""
    from safetensors.numpy import load_file, save_file

    from textvae.io.checkpoint import read_metadata
    best = d / "run" / "best.safetensors"
    (d / "trunc.safetensors").write_bytes(best.read_bytes()[:5000])
    arrays = load_file(best)
    arrays["to_logits.bias"] = arrays["to_logits.bias"][:3].copy()
    save_file(arrays, d / "reshaped.safetensors", metadata=read_metadata(best))


LONG = "ab " * 33_334          # 100,002 characters
NOT_UTF8 = "caf\udce9"          # what Python makes of the bytes b"caf\xe9" on a command line (surrogateescape)


def cases(d: Path) -> list[tuple]:
    """(what, args, options): options may hold cwd, fast=False (seconds or more), stream=True (judged by how
    soon its first line comes, then stopped), stdout (a path to send stdout to), exit (the exit code expected)."""
    slow = {"fast": False}
    refused = {"exit": 2}
    return [
        ("missing file", ["train", "nope.txt"], {}),
        ("empty file", ["train", "empty.txt"], {}),
        ("only-whitespace lines", ["train", "spaces.txt"], {}),
        ("not UTF-8 (latin-1)", ["train", "latin1.txt"], {}),
        ("not UTF-8, with --errors replace", ["train", "latin1.txt", "--errors", "replace", "--out", "r1", *TINY], slow),
        ("not UTF-8, with --encoding latin-1", ["train", "latin1.txt", "--encoding", "latin-1", "--out", "r2", *TINY],
         slow),
        ("NUL bytes", ["train", "nul.txt"], {}),
        ("mixed line endings", ["train", "mixed.txt", "--out", "r3", *TINY], slow),
        ("one line of 100 MB", ["train", "huge_line.txt", "--out", "r4", *TINY], slow),
        ("a directory instead of a file", ["train", "adir"], {}),
        ("unknown --column", ["train", "t.csv", "--column", "text"], {}),
        ("output directory holds another run", ["train", "items.txt", "--out", "run", *TINY], {}),
        ("read-only output directory" + (" (run as root: writable)" if os.geteuid() == 0 else ""),
         ["train", "items.txt", "--out", "ro/run", *TINY], slow),
        ("--batch-size 0", ["train", "items.txt", "--batch-size", "0"], {}),
        ("--minutes 0", ["train", "items.txt", "--minutes", "0"], {}),
        ("unknown --lr-schedule", ["train", "items.txt", "--lr-schedule", "wavy"], {}),
        ("resume a run that has no state", ["train", "--resume", "adir"], {}),
        ("checkpoint path that is not a checkpoint", ["generate", "--model", "fake.safetensors"], {}),
        ("truncated checkpoint", ["generate", "--model", "trunc.safetensors"], {}),
        ("tensors unlike the checkpoint's configuration", ["generate", "--model", "reshaped.safetensors"], {}),
        ("pickle payload in a run directory", ["generate", "--model", "bomb"], {}),
        ("no model trained here", ["generate"], {"cwd": d / "adir"}),
        ("-n 0", ["generate", "-n", "0", "--model", "run"], {}),
        ("negative temperature", ["generate", "--temperature", "-1", "--model", "run"], {}),
        ("--top-p 0", ["generate", "--top-p", "0", "--model", "run"], {}),
        ("--max-len 0", ["generate", "--max-len", "0", "--model", "run"], {}),
        ("--label on an unconditional model", ["generate", "--label", "x", "--model", "run"], {}),
        ("-n 2,000,000 into a file", ["generate", "-n", "2000000", "--model", "run"],
         {"fast": False, "stream": True}),
        ("-n 1,000,000,000", ["generate", "-n", "1000000000", "--model", "run"], {"fast": False, "stream": True}),
        ("output on a full disk (/dev/full)", ["generate", "-n", "5000", "--model", "run"],
         {"fast": False, "stdout": "/dev/full"}),
        ("--steps 1", ["interpolate", "a", "b", "--steps", "1", "--model", "run"], {}),
        ("--steps 10,000,000", ["interpolate", "a", "b", "--steps", "10000000", "--model", "run"], {}),
        ("empty text", ["interpolate", "", "word1", "--model", "run"], {}),
        ("one text", ["interpolate", "word1", "--model", "run"], {}),
        ("a text of 100,000 characters", ["interpolate", LONG, "b", "--model", "run"], {}),
        ("the same, with --truncate", ["interpolate", LONG, "b", "--model", "run", "--truncate"], {}),
        ("--out with an unknown kind", ["interpolate", "a", "b", "--model", "run", "--out", "path.pdf"], {}),
        ("--out in a missing directory", ["interpolate", "a", "b", "--model", "run", "--out", "nowhere/p.html"], {}),
        ("analogy with an empty text", ["analogy", "a", "", "c", "--model", "run"], {}),
        ("characters the model never saw", ["reconstruct", "wörd€", "--model", "run"], {}),
        ("nothing to reconstruct", ["reconstruct", "--model", "run"], {}),
        ("--file that does not exist", ["reconstruct", "--file", "missing.txt", "--model", "run"], {}),
        ("--file with a 5 MB line", ["reconstruct", "--file", "big_line.txt", "--model", "run"], {}),
        ("encode --out in a missing directory", ["encode", "items.txt", "--out", "/nonexistent/x.npy",
                                                 "--model", "run"], {}),
        ("encode --out onto a read-only file", ["encode", "items.txt", "--out", "readonly.npy", "--model", "run"], {}),
        ("encode --out of an unknown kind", ["encode", "items.txt", "--out", "codes.csv", "--model", "run"], {}),
        ("evaluate --samples 0", ["evaluate", "items.txt", "--samples", "0", "--model", "run"], {}),
        ("evaluate --samples 1,000,000", ["evaluate", "items.txt", "--samples", "1000000", "--model", "run"], {}),
        ("evaluate --json in a missing directory", ["evaluate", "items.txt", "--model", "run", "--samples", "2",
                                                    "--num-samples", "5", "--json", "no/dir/e.json"], slow),
        ("bench --steps 0", ["bench", "--steps", "0"], {}),
        # numbers that are not finite, of every option that takes a number (click's FloatRange lets NaN through)
        ("--temperature nan", ["generate", "-n", "3", "--temperature", "nan", "--model", "run"], refused),
        ("--temperature inf", ["generate", "-n", "3", "--temperature", "inf", "--model", "run"], refused),
        ("--top-p nan", ["generate", "-n", "3", "--top-p", "nan", "--model", "run"], refused),
        ("--repetition-penalty inf", ["generate", "-n", "3", "--repetition-penalty", "inf", "--model", "run"], refused),
        ("--radius inf", ["generate", "-n", "3", "--near", "word1", "--radius", "inf", "--model", "run"], refused),
        ("--temperature 1e39 (inf in float32)", ["generate", "--temperature", "1e39", "--model", "run"], refused),
        ("--length-penalty -inf", ["reconstruct", "word1", "--length-penalty", "-inf", "--model", "run"], refused),
        ("train --lr nan", ["train", "items.txt", "--lr", "nan"], refused),
        ("train --free-bits nan", ["train", "items.txt", "--free-bits", "nan"], refused),
        ("train --word-dropout nan", ["train", "items.txt", "--word-dropout", "nan"], refused),
        ("train --minutes nan", ["train", "items.txt", "--minutes", "nan"], refused),
        ("train --minutes inf", ["train", "items.txt", "--minutes", "inf"], refused),
        ("train --seed -1", ["train", "items.txt", "--seed", "-1"], refused),
        ("evaluate --seed 2^64", ["evaluate", "items.txt", "--seed", str(2**64), "--model", "run"], refused),
        # text that is not Unicode: bytes that are not UTF-8 on the command line, a JSON "\ud800" in a corpus
        ("a text that is not UTF-8", ["reconstruct", NOT_UTF8, "--model", "run"], refused),
        ("--near a text that is not UTF-8", ["generate", "--near", NOT_UTF8, "--model", "run"], refused),
        ("a file name that is not UTF-8", ["train", NOT_UTF8 + ".txt"], refused),
        ("a corpus holding a lone surrogate (JSON)", ["train", "surrogate.jsonl"], {"exit": 1}),
        ("a file name too long for the system", ["train", "n" * 300], {"exit": 1}),
        ("--model of a name too long for the system", ["generate", "--model", "n" * 300], {"exit": 1}),
        ("--device cuda:7 on a machine without it", ["evaluate", "items.txt", "--device", "cuda:7", "--model", "run"],
         {"exit": 1}),
        ("the same, with --errors replace", ["train", "surrogate.jsonl", "--errors", "replace", "--out", "r5", *TINY],
         slow),
    ]


def row(what: str, args: list[str], result, seconds: float, streamed: str | None = None,
        expect: int | None = None) -> tuple[str, bool]:
    """A Markdown row, and whether the case is a bug (a traceback, the catch-all line, or an exit code other than
    `expect`)."""
    stderr, code = result
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if streamed is not None:
        last = streamed
    elif code == 0:
        last = (lines[0] if lines else "") + " … (ran normally)"
    shown_args = args[: len(args) - len(TINY)] if args[-len(TINY):] == TINY else args
    shown = " ".join(["textvae"] + [a if a and " " not in a and len(a) < 40 and a.isprintable() else
                                    (repr(a) if len(a) < 40 else f"'<{len(a):,} characters>'") for a in shown_args])
    bug = "Traceback" in stderr or "unexpected" in stderr or expect is not None and code != expect
    tb = "yes" if "Traceback" in stderr else "no"
    return f"| {what} | `{shown}` | {last.replace('|', '/')[:160]} | {code} | {tb} |", bug


def run_subprocess(d: Path, args, opts, env) -> tuple[tuple[str, int], float, str | None]:
    cmd = [sys.executable, "-m", "textvae", *args]
    cwd = opts.get("cwd", d)
    t0 = time.monotonic()
    if opts.get("stream"):
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()
        took = time.monotonic() - t0
        for _ in range(5000):
            proc.stdout.readline()
        proc.kill()
        _, stderr = proc.communicate()
        return (stderr, 0 if first else proc.returncode), took, (
            f"streams: first line after {took:.1f} s, stopped after 5,000 lines" if first else None)
    if "stdout" in opts:
        with open(opts["stdout"], "w") as out:
            r = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, text=True, timeout=600,
                               check=False)
    else:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    return (r.stderr, r.returncode), time.monotonic() - t0, None


def main() -> None:
    fast_only = "--fast" in sys.argv
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bugs = 0
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "good.txt").write_text("\n".join(f"word{i % 50}" for i in range(200)) + "\n")
        r = subprocess.run([sys.executable, "-m", "textvae", "train", "good.txt", "--out", "run", *TINY], cwd=d,
                           env=env, capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr
        make_files(d)
        (d / "huge_line.txt").write_bytes(b"x" * 100_000_000 + b"\nshort\n")
        make_model_files(d)
        print("| bad input | command | what the user sees (last stderr line) | exit | traceback |")
        print("| --- | --- | --- | --- | --- |")
        for what, args, opts in cases(d):
            if fast_only and not opts.get("fast", True):
                continue
            result, seconds, streamed = run_subprocess(d, args, opts, env)
            line, bug = row(what, args, result, seconds, streamed, opts.get("exit"))
            bugs += bug
            print(line, flush=True)
        assert not (d / "PWNED").exists(), "a pickle payload ran"
        os.chmod(d / "ro", stat.S_IRWXU)
    print(f"\n{bugs} case(s) reached a traceback or the catch-all 'unexpected' line, or exited otherwise than "
          "expected")
    sys.exit(1 if bugs else 0)


if __name__ == "__main__":
    main()
