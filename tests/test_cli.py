import os
from itertools import pairwise

import pytest
from click.testing import CliRunner

from textvae.cli.commands import cli

TINY = ["--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "8", "--steps", "30", "--batch-size", "32"]


def run(*args, input=None):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, tiny_corpus):
    """One tiny model trained through the command line, once per test session."""
    folder = tmp_path_factory.mktemp("cli")
    old = os.getcwd()
    os.chdir(folder)
    try:
        r = run("train", str(tiny_corpus), *TINY)
    finally:
        os.chdir(old)
    assert r.exit_code == 0, r.output
    return folder


@pytest.fixture
def trained(trained_dir, monkeypatch):
    """Inside the folder of the session's model, so that commands find it as the last one trained here."""
    monkeypatch.chdir(trained_dir)
    return trained_dir


def generate_without_torch(folder, *args):
    """`textvae generate ARGS` in a fresh process in `folder`, where importing torch fails."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None; from textvae.cli.commands import main; "
            "sys.argv = ['textvae', 'generate', *sys.argv[1:]]; main()")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=folder, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("options", [{}, {"strategy": "greedy"}, {"temperature": 0.8, "top_k": 3},
                                     {"top_p": 0.9, "repetition_penalty": 1.3, "no_repeat_ngram": 3}])
def test_cli_generate_needs_no_torch_and_gives_the_apis_items(trained_dir, options):
    """`textvae generate` decodes without loading torch (its first lines come before torch would have loaded)
    and prints what `Model.generate` gives for the same seed, in blocks that do not depend on -n."""
    import textvae
    args = [x for k, v in options.items()
            for x in (("--greedy",) if v == "greedy" else (f"--{k.replace('_', '-')}", str(v)))]
    r = generate_without_torch(trained_dir, "-n", "300", "--seed", "5", *args)
    assert r.returncode == 0, r.stderr
    texts = r.stdout.splitlines()
    assert texts == textvae.load(trained_dir / "runs" / "tiny").generate(300, seed=5, **options)
    assert len(set(texts)) > 30
    r = generate_without_torch(trained_dir, "-n", "7", "--seed", "5", *args)
    assert r.stdout.splitlines() == texts[:7]


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


def test_cli_refuses_to_overwrite_a_run_without_force(workdir, tiny_corpus):
    assert run("train", str(tiny_corpus), *TINY, "--steps", "2").exit_code == 0
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
    for command in ("train", "generate", "reconstruct", "encode", "interpolate", "analogy", "evaluate", "plot", "bench"):
        assert command in r.stdout
        r2 = run(command, "--help")
        assert r2.exit_code == 0 and "Usage:" in r2.stdout
        assert ("--model" in r2.stdout) == (command not in ("train", "plot", "bench")), command


def test_cli_evaluate_with_a_language_model_baseline(trained_dir, workdir, tiny_corpus):
    r = run("train", str(tiny_corpus), *TINY, "--lm", "--out", "runs/lm")
    assert r.exit_code == 0, r.output
    held_out = workdir / "held_out.txt"
    held_out.write_text("apples\nrivers\ncherry\nmango\n")
    r = run("evaluate", str(held_out), "--model", str(trained_dir / "runs" / "tiny"), "--baseline", "runs/lm",
            "--samples", "5", "--num-samples", "50", "--json", "eval.json")
    assert r.exit_code == 0, r.output
    import json
    vae, lm = json.loads((workdir / "eval.json").read_text())
    assert vae["items"] == lm["items"] == 4 and lm["samples"] == 1 and vae["samples"] == 5
    assert lm["kl"] == 0 and lm["mi"] == 0 and lm["active_units"] == 0
    assert vae["iw_nll"] > 0 and 0 <= vae["reconstruction"]["exact"] <= 1
    assert "copied" in vae["sampling"]                  # the run's corpus is at hand, so novelty is known
    assert vae["gap_to_baseline"] == pytest.approx(vae["iw_nats_per_char"] / lm["iw_nats_per_char"] - 1)
    assert "IW-NLL" in r.stderr


def test_cli_generate_stats(trained):
    r = run("generate", "-n", "40", "--seed", "0", "--stats")
    assert r.exit_code == 0
    assert len(r.stdout.splitlines()) == 40
    assert "40 samples:" in r.stderr and "new" in r.stderr and "duplicates" in r.stderr


def test_cli_plot_writes_curves_and_latent_map(trained):
    pytest.importorskip("matplotlib")
    r = run("plot", "runs/tiny")
    assert r.exit_code == 0, r.output
    for name in ("curves.png", "latent_map.png"):
        path = trained / "runs" / "tiny" / name
        assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"


def test_cli_plot_colours_by_label(workdir):
    rows = ["text\tlabel"] + [f"{w}\t{'fruit' if i < 8 else 'water'}" for i, w in enumerate(
        ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "olive", "river", "ocean", "stream", "brook", "creek", "delta", "marsh", "swamp"])]
    (workdir / "lab.tsv").write_text("\n".join(rows * 4) + "\n")
    assert run("train", "lab.tsv", *TINY).exit_code == 0
    r = run("plot", "--data", "lab.tsv", "--label", "label")
    assert r.exit_code == 0, r.output
    assert (workdir / "runs" / "lab" / "latent_map.png").exists()


def test_cli_reconstruct_encode_and_decode_agree(trained):
    import json

    import numpy as np
    (trained / "items.txt").write_text("apple\nriver\nmango\n")
    r = run("reconstruct", "apple", "--file", "items.txt")
    assert r.exit_code == 0, r.output
    pairs = [line.split("\t") for line in r.stdout.splitlines()]
    assert [p[0] for p in pairs] == ["apple", "apple", "river", "mango"]
    assert run("encode", "items.txt", "--out", "codes.npy", "--logvar").exit_code == 0
    codes = np.load(trained / "codes.npy")
    assert codes.shape == (3, 8) and (trained / "codes.logvar.npy").exists()
    import textvae
    m = textvae.load(trained / "runs" / "tiny")
    assert m.decode(codes) == [p[1] for p in pairs[1:]]
    assert run("encode", "items.txt", "--out", "codes.jsonl").exit_code == 0
    recs = [json.loads(line) for line in (trained / "codes.jsonl").read_text().splitlines()]
    assert [r["text"] for r in recs] == ["apple", "river", "mango"]
    assert np.allclose([r["mu"] for r in recs], codes, atol=1e-5)


def test_cli_generate_strategies_and_near(trained):
    for args in (["--strategy", "beam", "--beam", "3"], ["--top-k", "3"], ["--top-p", "0.9"], ["--greedy"],
                 ["--near", "apple", "--radius", "0.5"], ["--repetition-penalty", "1.5"]):
        r = run("generate", "-n", "12", "--seed", "1", *args)
        assert r.exit_code == 0, (args, r.output)
        assert len(r.stdout.splitlines()) == 12


def test_cli_interpolate_options_and_pictures(trained):
    r = run("interpolate", "apple", "river", "--steps", "9", "--unique", "--method", "slerp", "--out", "path.html")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    texts = [l.split("\t")[1] for l in lines]
    assert all(a != b for a, b in pairwise(texts))
    page = (trained / "path.html").read_text()
    assert "<table>" in page and page.count("<tr>") == len(lines)
    r = run("interpolate", "--random", "--seed", "3", "--steps", "4")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 4
    pytest.importorskip("matplotlib")
    assert run("interpolate", "apple", "river", "--out", "path.png").exit_code == 0
    assert (trained / "path.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_analogy_and_unknown_characters(trained):
    r = run("analogy", "apple", "apples", "river")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1
    r = run("reconstruct", "app€le")
    assert r.exit_code == 0 and "never saw" in r.stderr


def test_cli_decoding_errors(trained):
    assert "empty" in _one_clear_line(run("reconstruct", ""))
    assert "nothing to read" in _one_clear_line(run("reconstruct"))
    assert "two texts" in _one_clear_line(run("interpolate", "apple"))
    assert "steps" in _one_clear_line(run("interpolate", "a", "b", "--steps", "1"))
    assert ".npy or .jsonl" in _one_clear_line(run("encode", "missing.txt", "--out", "codes.csv"))
    assert "empty" in _one_clear_line(run("generate", "--near", ""))


def test_cli_stream_option_trains_from_the_cache(workdir, tiny_corpus, monkeypatch):
    monkeypatch.setenv("TEXTVAE_CACHE", str(workdir / "cache"))
    r = run("train", str(tiny_corpus), *TINY, "--stream")
    assert r.exit_code == 0, r.output
    assert "cached in" in r.stderr and any((workdir / "cache").iterdir())
    assert len(run("generate", "-n", "3").stdout.splitlines()) == 3


def test_cli_vae_decoder_from_a_language_model(workdir, tiny_corpus):
    r = run("train", str(tiny_corpus), *TINY, "--lm", "--out", "runs/lm")
    assert r.exit_code == 0, r.output
    r = run("train", str(tiny_corpus), "--decoder-from", "runs/lm", "--latent-dim", "8", "--steps", "30",
            "--batch-size", "32", "--out", "runs/warm")
    assert r.exit_code == 0, r.output
    import json
    meta = json.loads((workdir / "runs/warm/run.json").read_text())
    text = json.dumps(meta)
    assert '"hidden_dim": 32' in text and '"lm": false' in text     # the language model's width, a VAE
    assert '"kl_schedule": "constant"' in text and '"free_bits": 0.1' in text
    r = run("generate", "--model", "runs/warm", "-n", "3")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 3
    # a free-bits value given on the command line wins over the --decoder-from default
    r = run("train", str(tiny_corpus), "--decoder-from", "runs/lm", "--steps", "2", "--free-bits", "0.3",
            "--out", "runs/warm2")
    assert r.exit_code == 0 and '"free_bits": 0.3' in (workdir / "runs/warm2/run.json").read_text()
    for args, message in ((["--hidden-dim", "64"], "differs from the language model"),
                          (["--lm"], "leave out --lm")):
        r = run("train", str(tiny_corpus), "--decoder-from", "runs/lm", *args, "--steps", "2", "--out", "runs/bad")
        assert r.exit_code != 0 and message in r.stderr and "Traceback" not in r.output
    other = workdir / "other.txt"                   # 'é' and 'q' never occur in the tiny corpus
    other.write_text("".join(f"{w}\n" for w in ["café", "queen", "apple", "river"] * 20))
    r = run("train", str(other), "--decoder-from", "runs/lm", "--steps", "2", "--out", "runs/other")
    assert r.exit_code == 0 and "characters of the corpus are not among the language model's" in r.stderr
    r = run("train", str(tiny_corpus), "--decoder-from", "runs/warm", "--steps", "2", "--out", "runs/bad")
    assert r.exit_code != 0 and "not a plain language model" in r.stderr
    r = run("train", str(tiny_corpus), "--decoder-from", "runs/nowhere", "--steps", "2", "--out", "runs/bad")
    assert r.exit_code != 0 and "no checkpoint" in r.stderr


def test_cli_bench_reports_its_figures(workdir):
    r = run("bench", "--hidden-dim", "16", "--encoder-dim", "6", "--embed-dim", "8", "--latent-dim", "4",
            "--batch-size", "4", "--seq-len", "8", "--steps", "2", "--repeats", "1", "--generate-n", "10",
            "--no-one-at-a-time", "--device", "cpu", "--json", "bench.json")
    assert r.exit_code == 0, r.output
    import json
    figures = json.loads((workdir / "bench.json").read_text())
    assert figures["train_chars_per_s"] > 0 and figures["kernel_chars_per_s"] > 0
    assert "encoder 6" in r.output


def test_cli_train_says_its_budget_and_writes_tensorboard_events(workdir, tiny_corpus):
    pytest.importorskip("tensorboard")
    r = run("train", str(tiny_corpus), "--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "8",
            "--minutes", "0.15", "--tensorboard")
    assert r.exit_code == 0, r.output
    assert "budget:" in r.stderr and "fit in 0.15 min" in r.stderr and "estimated time" in r.stderr
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    board = EventAccumulator(str(next((workdir / "runs" / "tiny" / "tensorboard").iterdir()).parent),
                             size_guidance={"tensors": 0})
    board.Reload()
    tags = board.Tags()
    assert {"train/loss", "train/kl", "train/beta", "train/lr", "valid/nll_elbo"} <= set(tags["scalars"])
    assert any("samples" in t for t in tags["tensors"])
    import json
    lines = [json.loads(x) for x in (workdir / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert len(board.Scalars("train/loss")) == sum(x["kind"] == "step" for x in lines)   # the same record


def test_cli_sentences_get_a_code_of_slots_and_decode_without_running_away(workdir):
    import json
    import random
    rng = random.Random(1)
    words = ["the", "film", "is", "a", "story", "of", "love", "and", "loss", ",", "told", "with", "wit", "but", "not", "much", "grace", "."]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 14))) for _ in range(300)]
    (workdir / "reviews.txt").write_text("\n".join(lines) + "\n")
    r = run("train", "reviews.txt", "--embed-dim", "16", "--hidden-dim", "32", "--steps", "40")
    assert r.exit_code == 0, r.output
    assert "read as sentences" in r.stderr and "slots" in r.stderr
    meta = json.loads((workdir / "runs" / "reviews" / "run.json").read_text())
    longest = max(map(len, lines))
    config = meta["model_config"]
    assert config["slots"] == max(len(t.split()) for t in lines)                 # a slot per word, and a global code
    assert config["slot_feed"] and config["slot_break"] >= 0 and config["latent_dim"] == 16 * config["slots"] + 32
    assert config["global_dim"] == 32 and not config["slot_prior"] and not config["fitted_prior"]
    assert config["word_prior"] == len(set(words))           # the learned prior's vocabulary: every word seen twice
    assert meta["model_config"]["encoder_dim"] == 64
    assert meta["train_config"]["batch_size"] == 32 and meta["train_config"]["free_bits"] == 0.5
    assert meta["train_config"]["word_dropout"] == 0.0
    r = run("generate", "-n", "20", "--seed", "0")
    samples = r.stdout.splitlines()
    assert r.exit_code == 0 and len(samples) == 20 and all(samples) and all(len(s) <= longest for s in samples)
    import textvae
    assert textvae.load(workdir / "runs" / "reviews").generate(20, seed=0) == samples
    r = run("interpolate", lines[0], lines[1], "--steps", "5")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 5 and "endpoint fidelity" in r.stderr
    # an option given on the command line wins over the sentence settings
    r = run("train", "reviews.txt", "--embed-dim", "16", "--hidden-dim", "32", "--steps", "2", "--slots", "0",
            "--batch-size", "16", "--encoder-dim", "24", "--out", "plain")
    assert r.exit_code == 0, r.output
    meta = json.loads((workdir / "plain" / "run.json").read_text())
    assert meta["model_config"]["slots"] == 0 and meta["train_config"]["batch_size"] == 16
    assert meta["model_config"]["encoder_dim"] == 24
    r = run("train", "reviews.txt", "--embed-dim", "16", "--hidden-dim", "32", "--steps", "2", "--slot-prior", "16",
            "--out", "fitted")                                       # the earlier prior of sentences, asked for
    assert r.exit_code == 0, r.output
    meta = json.loads((workdir / "fitted" / "run.json").read_text())
    config = meta["model_config"]
    assert config["slot_prior"] == 16 and config["fitted_prior"] and not config["word_prior"]
    assert config["latent_dim"] == 16 * config["slots"] and not config["global_dim"]
    assert meta["train_config"]["free_bits"] == 1.0
    r = run("train", "reviews.txt", "--embed-dim", "16", "--hidden-dim", "32", "--steps", "2", "--slot-unit", "char",
            "--no-slot-feed", "--out", "chars")
    assert r.exit_code == 0, r.output
    config = json.loads((workdir / "chars" / "run.json").read_text())["model_config"]
    assert config["slots"] == -(-longest // 8) and not config["slot_feed"] and config["slot_break"] == -1


def test_cli_slots_that_follow_words(workdir, tiny_corpus):
    import json
    import random
    rng = random.Random(2)
    words = ["a", "quiet", "film", ",", "warm", "and", "funny", ",", "but", "far", "too", "long", "."]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(200)]
    (workdir / "s.txt").write_text("\n".join(lines) + "\n")
    r = run("train", "s.txt", "--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "36", "--slots", "9",
            "--slot-unit", "word", "--slot-feed", "--steps", "30", "--out", "w")
    assert r.exit_code == 0, r.output
    config = json.loads((workdir / "w" / "run.json").read_text())["model_config"]
    assert config["slots"] == 9 and config["slot_feed"] and config["slot_break"] >= 0
    r = run("reconstruct", lines[0], lines[1], "--model", "w")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 2
    # a corpus without spaces has no words to follow: one line, no traceback
    r = run("train", str(tiny_corpus), "--slots", "4", "--latent-dim", "8", "--slot-unit", "word", "--steps", "2",
            "--out", "nospace")
    assert r.exit_code != 0 and "no spaces" in r.stderr and "Traceback" not in r.output
