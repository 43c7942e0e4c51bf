"""Try every kind of bad input on the real command line and print what a user sees, as a Markdown table.

    python benchmarks/bad_inputs.py            # about a minute on 2 CPU cores

Each row: the input, the command, the last line the user sees on stderr, the exit code, and whether
a Python traceback appeared (it never should).
"""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

TINY = ["--steps", "5", "--embed-dim", "8", "--hidden-dim", "16", "--latent-dim", "4", "--batch-size", "8"]


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def main() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def tv(*args, cwd=d):
            return subprocess.run([sys.executable, "-m", "textvae", *args], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=600)

        (d / "good.txt").write_text("\n".join(f"word{i % 50}" for i in range(200)) + "\n")
        assert tv("train", "good.txt", "--out", "run", *TINY).returncode == 0
        (d / "empty.txt").write_text("")
        (d / "spaces.txt").write_text("   \n\t\n  \n")
        (d / "latin1.txt").write_bytes("ok\ncaf\xe9 au lait\n".encode("latin-1"))
        (d / "nul.txt").write_bytes(b"abc\x00def\nghi\n")
        (d / "mixed.txt").write_bytes(b"one\r\ntwo\rthree\nfour\n")
        (d / "huge_line.txt").write_bytes(b"x" * 100_000_000 + b"\nshort\n")
        (d / "t.csv").write_text("a,b\n1,2\n")
        (d / "adir").mkdir()
        (d / "fake.safetensors").write_text("not a checkpoint")
        (d / "trunc.safetensors").write_bytes((d / "run" / "best.safetensors").read_bytes()[:5000])
        (d / "bomb").mkdir()
        for name in ("best.safetensors", "model.pt"):
            (d / "bomb" / name).write_bytes(pickle.dumps(Payload()))
        (d / "ro").mkdir()
        os.chmod(d / "ro", stat.S_IRUSR | stat.S_IXUSR)
        root = os.geteuid() == 0

        cases = [
            ("missing file", ["train", "nope.txt"]),
            ("empty file", ["train", "empty.txt"]),
            ("only-whitespace lines", ["train", "spaces.txt"]),
            ("not UTF-8 (latin-1)", ["train", "latin1.txt"]),
            ("not UTF-8, with --errors replace", ["train", "latin1.txt", "--errors", "replace", "--out", "r1", *TINY]),
            ("not UTF-8, with --encoding latin-1", ["train", "latin1.txt", "--encoding", "latin-1", "--out", "r2", *TINY]),
            ("NUL bytes", ["train", "nul.txt"]),
            ("mixed line endings", ["train", "mixed.txt", "--out", "r3", *TINY]),
            ("one line of 100 MB", ["train", "huge_line.txt", "--out", "r4", *TINY]),
            ("a directory instead of a file", ["train", "adir"]),
            ("unknown --column", ["train", "t.csv", "--column", "text"]),
            ("output directory holds another run", ["train", "good.txt", "--out", "run", *TINY]),
            ("read-only output directory" + (" (run as root: writable)" if root else ""),
             ["train", "good.txt", "--out", "ro/run", *TINY]),
            ("checkpoint path that is not a checkpoint", ["generate", "--model", "fake.safetensors"]),
            ("truncated checkpoint", ["generate", "--model", "trunc.safetensors"]),
            ("pickle payload in a run directory", ["generate", "--model", "bomb"]),
            ("no model trained here", ["generate"], d / "adir"),
            ("-n 0", ["generate", "-n", "0", "--model", "run"]),
            ("negative temperature", ["generate", "--temperature", "-1", "--model", "run"]),
            ("--steps 1", ["interpolate", "a", "b", "--steps", "1", "--model", "run"]),
            ("empty text", ["interpolate", "", "word1", "--model", "run"]),
            ("characters the model never saw", ["reconstruct", "wörd€", "--model", "run"]),
            ("resume a run that has no state", ["train", "--resume", "adir"]),
        ]
        print("| bad input | command | what the user sees (last stderr line) | exit | traceback |")
        print("| --- | --- | --- | --- | --- |")
        for what, args, *where in cases:
            r = tv(*args, cwd=where[0] if where else d)
            lines = [line for line in r.stderr.splitlines() if line.strip()]
            last = lines[-1] if lines else ""
            if r.returncode == 0:
                last = (lines[0] if lines else "") + " … (trained/printed normally)"
            shown_args = args[: len(args) - len(TINY)] if args[-len(TINY):] == TINY else args
            shown = " ".join(["textvae"] + [a if a and " " not in a else repr(a) for a in shown_args])
            tb = "yes" if "Traceback" in r.stderr else "no"
            print(f"| {what} | `{shown}` | {last.replace('|', '/')[:150]} | {r.returncode} | {tb} |", flush=True)
        assert not (d / "PWNED").exists(), "a pickle payload ran"
        os.chmod(d / "ro", stat.S_IRWXU)


if __name__ == "__main__":
    main()
