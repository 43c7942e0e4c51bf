"""The fast cases of benchmarks/bad_inputs.py, run in-process: every bad input ends in one clear line (or a
normal run), never a traceback and never the catch-all "unexpected" line."""

import importlib.util
import os
from pathlib import Path

from click.testing import CliRunner

from textvae.cli import cli

spec = importlib.util.spec_from_file_location("bad_inputs", Path(__file__).parent.parent / "benchmarks" / "bad_inputs.py")
bad_inputs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bad_inputs)


def test_every_fast_bad_input_gets_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.txt").write_text("\n".join(f"word{i % 50}" for i in range(200)) + "\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["train", "good.txt", "--out", "run", *bad_inputs.TINY]).exit_code == 0
    bad_inputs.make_files(tmp_path)
    bad_inputs.make_model_files(tmp_path)
    checked = 0
    for what, args, opts in bad_inputs.cases(tmp_path):
        if not opts.get("fast", True):
            continue
        monkeypatch.chdir(opts.get("cwd", tmp_path))
        r = runner.invoke(cli, args)
        _, bug = bad_inputs.row(what, args, (r.stderr, r.exit_code), 0.0)
        assert not bug and r.exception is None or isinstance(r.exception, SystemExit), (what, r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        if r.exit_code != 0:
            assert lines and lines[-1].startswith("error:") and "unexpected" not in lines[-1], (what, r.stderr)
            assert len([x for x in lines if x.startswith("error:")]) == 1, (what, r.stderr)
        checked += 1
    assert checked >= 35
    assert not (tmp_path / "PWNED").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]        # no partial file left behind
