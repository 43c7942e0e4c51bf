"""`generate` gives new items: a draw that is a training item is drawn again, unless asked to keep copies."""

import dataclasses

import pytest
from click.testing import CliRunner

import textvae
from textvae.cli.commands import cli
from textvae.data.words import WordSet


@pytest.fixture(scope="module")
def piece_run(tmp_path_factory, tiny_corpus):
    """A word model with the defaults for short items, trained until most of its draws are training words."""
    out = tmp_path_factory.mktemp("pieces") / "run"
    r = CliRunner().invoke(cli, ["train", str(tiny_corpus), "--out", str(out), "--steps", "60"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def training_words(corpus) -> set[str]:
    return {w for w in corpus.read_text().split() if w}


@pytest.mark.slow        # a word model trained for 60 steps (the quick tier has the next test)
def test_generate_draws_training_items_again_unless_told_to_keep_them(piece_run, tiny_corpus):
    m = textvae.load(piece_run)
    drawn = m.generate(200, seed=4, new=False)
    new = m.generate(200, seed=4)
    known = m.items.contains(drawn)              # the training items as the checkpoint holds them (a Bloom filter)
    assert sum(known) > 20 and sum(t in training_words(tiny_corpus) for t in drawn) >= sum(known) - 2
    assert sum(m.items.contains(new)) < sum(known) / 2
    assert new == m.generate(200, seed=4) and new[:30] == m.generate(30, seed=4)    # a seed, the same items
    assert all(new[i] == drawn[i] for i in range(len(drawn)) if not known[i])        # new draws are kept
    cli_new = CliRunner().invoke(cli, ["generate", "--model", str(piece_run), "-n", "200", "--seed", "4"])
    cli_all = CliRunner().invoke(cli, ["generate", "--model", str(piece_run), "-n", "200", "--seed", "4", "--copies"])
    assert cli_new.stdout.splitlines() == new and cli_all.stdout.splitlines() == drawn


def test_items_the_checkpoint_lists_as_training_items_never_come_back(trained_run):
    """Whatever the checkpoint's list of training items holds (here: half of the model's own draws) is drawn
    again, and every other item stays where it was."""
    m = textvae.load(trained_run)
    drawn = m.generate(300, seed=2, new=False)
    listed = set(drawn[:150])
    m.run = dataclasses.replace(m.run, items=WordSet.of(sorted(listed), whole=True).to_dict())
    new = m.generate(300, seed=2)
    assert not listed & set(new)
    assert all(b == a for a, b in zip(drawn, new) if a not in listed)
    assert new == m.generate(300, seed=2)
    assert m.generate(300, seed=2, new=False) == drawn


@pytest.mark.slow
def test_a_character_prior_draws_from_its_own_nucleus_unless_told(piece_run):
    from textvae.settings import PIECE_TOP_P
    m = textvae.load(piece_run)
    assert m.generate(60, seed=1, new=False) == m.generate(60, seed=1, new=False, top_p=PIECE_TOP_P)
    assert m.generate(60, seed=1, new=False) != m.generate(60, seed=1, new=False, top_p=1.0)


@pytest.mark.slow
def test_samples_near_a_text_keep_training_items(piece_run, tiny_corpus):
    """`--near` explores around a text: its neighbours as the model draws them, training items included."""
    m = textvae.load(piece_run)
    word = next(w for w in sorted(training_words(tiny_corpus)) if m.items.contains([w])[0])     # a training word
    near = m.generate(40, seed=2, near=word)
    assert near == m.generate(40, seed=2, near=word, new=False)
    assert sum(m.items.contains(near)) > 0
