import pytest
from click.testing import CliRunner

from textvae.cli import cli

TINY = ["--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "8", "--steps", "30", "--batch-size", "32"]


def run(*args, input=None):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def trained(workdir, tiny_corpus):
    r = run("train", str(tiny_corpus), *TINY)
    assert r.exit_code == 0, r.output
    return workdir


def test_cli_train_then_generate_and_interpolate(trained, tiny_corpus):
    run_dir = trained / "runs" / "tiny"
    assert (run_dir / "best.safetensors").is_file() and (run_dir / "last.safetensors").is_file()
    assert (run_dir / "metrics.jsonl").is_file() and (run_dir / "run.json").is_file()

    r = run("generate", "-n", "50", "--seed", "1")
    assert r.exit_code == 0
    assert len(r.stdout.splitlines()) == 50
    assert "using model" in r.stderr and "runs/tiny" in r.stderr
    assert run("generate", "-n", "50", "--seed", "1").stdout == r.stdout

    r = run("interpolate", "apple", "river", "--steps", "5")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 5 and lines[0].startswith("0.00\t") and lines[-1].startswith("1.00\t")

    r = run("generate", "--model", str(run_dir / "last.safetensors"), "-n", "3", "--greedy")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 3 and "using model" not in r.stderr


def test_cli_refuses_to_overwrite_a_run_without_force(trained, tiny_corpus):
    r = run("train", str(tiny_corpus), *TINY)
    assert r.exit_code != 0 and "--force" in r.stderr
    assert run("train", str(tiny_corpus), *TINY, "--force").exit_code == 0


def test_cli_word_unit_and_lstm_and_out(workdir, tiny_corpus):
    r = run("train", str(tiny_corpus), *TINY, "--unit", "word", "--cell", "lstm", "--out", "mine",
            "--kl-schedule", "cyclical", "--kl-warmup", "10")
    assert r.exit_code == 0, r.output
    assert (workdir / "mine" / "best.safetensors").exists()
    assert "mine" in run("generate", "-n", "2").stderr


def _one_clear_line(result):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_bad_input_gives_one_line_and_nonzero_exit(workdir, tiny_corpus):
    (workdir / "empty.txt").write_text("")
    (workdir / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (workdir / "t.csv").write_text("a,b\n1,2\n")
    (workdir / "fake.safetensors").write_text("hello")
    assert "not found" in _one_clear_line(run("train", "missing.txt"))
    assert "no items" in _one_clear_line(run("train", "empty.txt"))
    assert "not utf-8" in _one_clear_line(run("train", "latin1.txt")).lower()
    assert "no column 'text'" in _one_clear_line(run("train", "t.csv", "--column", "text"))
    assert "not a textvae checkpoint" in _one_clear_line(run("generate", "--model", "fake.safetensors"))
    assert "no model" in _one_clear_line(run("generate"))
    assert "-n" in _one_clear_line(run("generate", "-n", "0", "--model", "fake.safetensors"))
    assert "temperature" in _one_clear_line(run("generate", "--temperature", "-1", "--model", "fake.safetensors"))
    assert "steps" in _one_clear_line(run("interpolate", "a", "b", "--steps", "1"))
    assert "no checkpoint" in _one_clear_line(run("generate", "--model", str(workdir)))


def test_empty_text_to_interpolate(trained):
    assert "empty" in _one_clear_line(run("interpolate", "", "apple"))


def test_help_explains_every_command():
    r = run("--help")
    assert r.exit_code == 0
    for command in ("train", "generate", "interpolate"):
        assert command in r.stdout
        r2 = run(command, "--help")
        assert r2.exit_code == 0 and "--model" in r2.stdout or command == "train"
