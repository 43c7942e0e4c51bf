"""The conditional VAE end to end: train with --label, save/load, generate by label, transfer, errors."""

import json
import random

import pytest
from click.testing import CliRunner

import textvae
from textvae.classifier import NgramClassifier
from textvae.cli import cli

TINY = ["--embed-dim", "16", "--hidden-dim", "48", "--latent-dim", "8", "--batch-size", "32"]


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Two labels with different alphabets: 'low' words use a-m, 'high' words use n-z."""
    rng = random.Random(0)
    rows = ["text\tlabel"]
    for _ in range(400):
        label = rng.choice(["low", "high"])
        letters = "abcdefghijklm" if label == "low" else "nopqrstuvwxyz"
        rows.append("".join(rng.choice(letters) for _ in range(rng.randint(3, 7))) + "\t" + label)
    rows += ["orphan\t", "mystery\t"]                        # rows with no label: skipped and counted
    folder = tmp_path_factory.mktemp("labelled")
    (folder / "pairs.tsv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def trained(labelled):
    import os
    old = os.getcwd()
    os.chdir(labelled)
    try:
        r = run("train", "pairs.tsv", "--label", "label", "--steps", "250", *TINY)
        assert r.exit_code == 0, r.output
        assert "2 with no label" in r.stderr and "labels: high" in r.stderr
        yield labelled
    finally:
        os.chdir(old)


def test_saved_conditional_model_generates_by_label(trained):
    m = textvae.load(trained / "runs" / "pairs")
    assert m.conditional and m.labels == ["high", "low"]
    low = m.generate(100, label="low", seed=0)
    high = m.generate(100, label="high", seed=0)
    share = lambda texts, letters: sum(c in letters for t in texts for c in t) / max(sum(map(len, texts)), 1)
    assert share(low, "abcdefghijklm") > 0.9
    assert share(high, "nopqrstuvwxyz") > 0.9


def test_cli_generate_transfer_and_label_errors(trained, monkeypatch):
    monkeypatch.chdir(trained)
    r = run("generate", "-n", "20", "--label", "high", "--seed", "1")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 20
    r = run("reconstruct", "abcde", "--label", "low", "--to-label", "high")
    assert r.exit_code == 0
    src, out = r.stdout.strip().split("\t")
    assert src == "abcde" and sum(c in "nopqrstuvwxyz" for c in out) > len(out) / 2
    for args, message in ((["generate", "--label", "medium"], "unknown label 'medium'"),
                          (["generate", "-n", "2"], "conditional: pass --label"),
                          (["reconstruct", "abc", "--label", "low", "--to-label", "nope"], "unknown label 'nope'")):
        r = run(*args)
        assert r.exit_code != 0 and message in r.stderr and "Traceback" not in r.output
    r = run("interpolate", "abc", "xyz", "--label", "low", "--label-b", "high", "--steps", "4")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 4


def test_cli_evaluate_judges_labels(trained, monkeypatch):
    monkeypatch.chdir(trained)
    r = run("evaluate", "pairs.tsv", "--samples", "3", "--num-samples", "20", "--per-label", "50", "--json", "e.json")
    assert r.exit_code == 0, r.output
    lab = json.loads((trained / "e.json").read_text())["labels"]
    assert lab["classifier_accuracy"] > 0.95
    assert lab["label_agreement"] > 0.8
    assert set(lab["label_agreement_by_label"]) == {"low", "high"}


def test_label_to_an_unconditional_model_is_refused(tmp_path, monkeypatch, tiny_corpus):
    monkeypatch.chdir(tmp_path)
    assert run("train", str(tiny_corpus), "--steps", "5", *TINY).exit_code == 0
    r = run("generate", "--label", "x")
    assert r.exit_code != 0 and "needs a conditional model" in r.stderr


def test_classifier_learns_a_separable_rule():
    rng = random.Random(1)
    texts, labels = [], []
    for _ in range(300):
        y = rng.choice("ab")
        texts.append("".join(rng.choice("xyz" if y == "a" else "uvw") for _ in range(6)))
        labels.append(y)
    clf = NgramClassifier.fit(texts[:250], labels[:250])
    assert clf.accuracy(texts[250:], labels[250:]) == 1.0
    assert clf.predict(["xyzxyz", "uvwuvw"]) == ["a", "b"]
