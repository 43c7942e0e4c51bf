"""The conditional VAE end to end: train with --label, save/load, generate by label, transfer, errors."""

import json
import random

import pytest
import torch
from click.testing import CliRunner

import textvae
from textvae.cli.commands import cli
from textvae.decoding.beam import Guided, beam_search
from textvae.decoding.loop import decode_codes
from textvae.evaluation.classifier import NgramClassifier
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig

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
    assert lab["guidance"] == 1.0                           # the default for a model trained with label dropout
    r = run("evaluate", "pairs.tsv", "--samples", "3", "--num-samples", "0", "--per-label", "50", "--guidance", "0",
            "--json", "e0.json")
    assert r.exit_code == 0 and json.loads((trained / "e0.json").read_text())["labels"]["guidance"] == 0.0


def test_label_to_an_unconditional_model_is_refused(tmp_path, monkeypatch, tiny_corpus):
    monkeypatch.chdir(tmp_path)
    assert run("train", str(tiny_corpus), "--steps", "5", *TINY).exit_code == 0
    r = run("generate", "--label", "x")
    assert r.exit_code != 0 and "needs a conditional model" in r.stderr
    r = run("generate", "--guidance", "1")
    assert r.exit_code != 0 and "--guidance needs a conditional model" in r.stderr


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_guidance_zero_decodes_exactly_like_the_plain_decoder(cell):
    torch.manual_seed(0)
    model = TextVAE(ModelConfig(vocab_size=12, cell=cell, embed_dim=8, hidden_dim=16, latent_dim=4,
                                num_labels=3, label_dim=4, null_label=True)).eval()
    z = torch.randn(6, 4)
    code = model.condition(z, torch.tensor([0, 1, 2, 0, 1, 2]))
    both = torch.cat([code, model.condition(z, torch.full((6,), 3))], dim=1)
    guided = Guided(model, 0.0)
    assert torch.equal(decode_codes(guided, both, max_len=15), decode_codes(model, code, max_len=15))
    a = decode_codes(guided, both, max_len=15, greedy=False, generator=torch.Generator().manual_seed(1))
    b = decode_codes(model, code, max_len=15, greedy=False, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.equal(beam_search(guided, both, beam=3, max_len=15), beam_search(model, code, beam=3, max_len=15))
    # a positive weight changes what is decoded, and the same weight twice decodes the same
    strong = decode_codes(Guided(model, 5.0), both, max_len=15, greedy=False, generator=torch.Generator().manual_seed(1))
    again = decode_codes(Guided(model, 5.0), both, max_len=15, greedy=False, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(strong, a) and torch.equal(strong, again)


def test_guidance_steers_samples_towards_the_label(trained):
    m = textvae.load(trained / "runs" / "pairs")
    assert m.guidable                                       # trained with the default label dropout
    inside = lambda texts, letters: sum(c in letters for t in texts for c in t) / max(sum(map(len, texts)), 1)
    for label, letters in (("low", "abcdefghijklm"), ("high", "nopqrstuvwxyz")):
        plain = inside(m.generate(300, label=label, seed=2, guidance=0, temperature=1.5), letters)
        guided = inside(m.generate(300, label=label, seed=2, guidance=3, temperature=1.5), letters)
        assert guided > plain
    with pytest.raises(ValueError, match="at least 0"):
        m.generate(2, label="low", guidance=-1)


def test_label_dropout_zero_gives_a_model_that_refuses_guidance(labelled, monkeypatch):
    monkeypatch.chdir(labelled)
    r = run("train", "pairs.tsv", "--label", "label", "--label-dropout", "0", "--steps", "5", "--out", "nodrop",
            *TINY)
    assert r.exit_code == 0, r.output
    assert not textvae.load(labelled / "nodrop").guidable
    r = run("generate", "--model", "nodrop", "--label", "low", "--guidance", "2")
    assert r.exit_code != 0 and "--guidance needs" in r.stderr and "Traceback" not in r.output
    assert run("generate", "--model", "nodrop", "--label", "low", "-n", "3").exit_code == 0


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


def test_items_drawn_again_keep_their_rows_label(trained):
    """`generate` with a label per item draws a training item again under that item's label."""
    import dataclasses

    from textvae.data.words import WordSet
    m = textvae.load(trained / "runs" / "pairs")
    labels = ["low", "high"] * 60
    drawn = m.generate(120, label=labels, seed=1, new=False)
    listed = set(drawn[::3])                       # as if these were training items
    m.run = dataclasses.replace(m.run, items=WordSet.of(sorted(listed), whole=True).to_dict())
    new = m.generate(120, label=labels, seed=1)
    changed = [i for i in range(120) if new[i] != drawn[i]]
    assert len(changed) >= len(listed) // 2 and not listed & set(new)
    for label, letters in (("low", "abcdefghijklm"), ("high", "nopqrstuvwxyz")):
        texts = [new[i] for i in changed if labels[i] == label]
        assert texts and sum(c in letters for t in texts for c in t) / sum(map(len, texts)) > 0.9
