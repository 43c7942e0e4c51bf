"""The fast cases of benchmarks/bad_inputs.py, run in-process: every bad input ends in one clear line (or a
normal run), never a traceback and never the catch-all "unexpected" line; and whole classes of bad input (numbers
that are not finite, text that is not Unicode) refused at every option and door."""

import importlib.util
import math
import os
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import textvae
from textvae.cli.commands import cli
from textvae.settings import Decoding, NotUnicode

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
        _, bug = bad_inputs.row(what, args, (r.stderr, r.exit_code), 0.0, expect=opts.get("exit"))
        assert not bug and r.exception is None or isinstance(r.exception, SystemExit), (what, r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        if r.exit_code != 0:
            assert lines and lines[-1].startswith("error:") and "unexpected" not in lines[-1], (what, r.stderr)
            assert len([x for x in lines if x.startswith("error:")]) == 1, (what, r.stderr)
        if r.exit_code == 2:
            assert len(lines) == 1 and r.stdout == "", (what, r.stdout)
        checked += 1
    assert checked >= 50
    assert not (tmp_path / "PWNED").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]        # no partial file left behind


def refused(args) -> str:
    """The one line of a refusal: exit 2, nothing on stdout, one line on stderr."""
    r = CliRunner().invoke(cli, args)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.exit_code == 2 and r.stdout == "" and len(lines) == 1, (args, r.exit_code, r.stdout, r.stderr)
    assert lines[0].startswith("error:") and "unexpected" not in lines[0], lines
    return lines[0]


FLOAT_OPTIONS = [(name, max(param.opts, key=len)) for name, command in sorted(cli.commands.items()) for param in command.params
                 if isinstance(param, click.Option) and isinstance(param.type, click.types.FloatParamType)]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("command,option", FLOAT_OPTIONS, ids=[f"{c} {o}" for c, o in FLOAT_OPTIONS])
def test_every_number_option_refuses_numbers_that_are_not_finite(command, option, value):
    """Every option that reads a number, of every command (a new one is in this list as soon as it is declared)."""
    assert option in refused([command, option, value]) and "not a finite number" in refused([command, option, value])


def test_the_number_options_are_all_there():
    assert {("train", "--lr"), ("train", "--minutes"), ("train", "--free-bits"), ("train", "--word-dropout"),
            ("generate", "--temperature"), ("generate", "--top-p"), ("generate", "--radius"),
            ("generate", "--repetition-penalty"), ("evaluate", "--guidance")} <= set(FLOAT_OPTIONS)


@pytest.mark.parametrize("option", ["--temperature", "--top-p"])
def test_generate_with_a_number_that_is_not_a_number_prints_nothing(trained_run, option):
    """Once three empty lines (--temperature nan) and the catch-all line (--top-p nan)."""
    assert "is not a finite number" in refused(["generate", "-n", "3", option, "nan", "--model", str(trained_run)])


def test_text_that_is_not_unicode_is_refused_at_every_door(trained_run, monkeypatch, tmp_path):
    """Bytes of argv that are not UTF-8 reach Python as lone surrogates: refused before anything is read."""
    monkeypatch.chdir(tmp_path)
    model = str(trained_run)
    for args in (["reconstruct", "caf\udce9", "--model", model], ["generate", "--near", "\udcff", "--model", model],
                 ["interpolate", "apple", "a\ud800", "--model", model], ["train", "caf\udce9.txt"],
                 ["encode", "x.txt", "--out", "\udcff.npy", "--model", model]):
        assert "is not Unicode text: character" in refused(args)
    m = textvae.load(trained_run)                       # the Python API: every text passes `Model.fit_lengths`
    for call in (lambda: m.encode(["apple", "a\ud800"]), lambda: m.reconstruct("\udcff"),
                 lambda: m.interpolate("apple", "\ud800", steps=3), lambda: m.generate(2, near="x\udc80")):
        with pytest.raises(NotUnicode, match="is not Unicode text"):
            call()


def test_decoding_settings_refuse_numbers_that_are_not_finite():
    for field in ("temperature", "top_p", "length_penalty", "repetition_penalty", "guidance"):
        for x in (math.nan, math.inf, -math.inf):
            with pytest.raises(ValueError, match=f"finite {field}"):
                Decoding(strategy="sample", **{field: x})
    assert Decoding(strategy="sample", temperature=1e-300).strategy == "greedy"    # logits / T would overflow


def test_seeds_are_what_torch_and_numpy_take():
    for command in ("train", "generate", "evaluate"):
        assert "--seed" in refused([command, "--seed", "-1"]) and "--seed" in refused([command, "--seed", str(2**63)])
    torch.Generator().manual_seed(2**63 - 1)            # the largest seed the options take
