"""The word prior: a language model over a sentence's word slots, learned with the model (textvae/model/prior.py)."""

import json
import random

import numpy as np
import pytest
import torch

import textvae
from textvae.data.items import EncodedItems
from textvae.data.tokenizer import CharTokenizer
from textvae.evaluation.metrics import iw_nll
from textvae.io.checkpoint import RunInfo, save
from textvae.model.prior import END, FIRST_WORD, OTHER, pick, vocabulary, word_hashes, word_pieces
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig, TrainConfig
from textvae.training.trainer import train

SUBJECTS = ["the film", "this movie", "the cast", "her story", "the plot"]
VERBS = ["is", "feels", "seems", "remains"]
ENDS = ["funny .", "too long .", "a quiet joy .", "warm and sad .", "not worth it ."]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(ENDS)}" for _ in range(n)]


def test_words_are_split_as_the_slots_split_them():
    rng = random.Random(0)
    texts = ["".join(rng.choice("ab ") for _ in range(rng.randint(1, 12))) for _ in range(200)] + ["a  b", " a", "a "]
    tok = CharTokenizer.fit(texts)
    tokens, lengths = tok.batch(texts)
    for slots in (1, 3, 6):
        pieces, n, words = word_pieces(tokens, lengths, tok.stoi[" "], slots)
        rows = iter(tok.decode(p) for p in pieces.tolist())
        for text, k in zip(texts, words.tolist()):
            split = text.split(" ")
            expected = split[:slots - 1] + [" ".join(split[slots - 1:])] if len(split) > slots else split
            assert [next(rows) for _ in range(k)] == expected          # the last slot takes the rest
        assert (n == torch.tensor([len(t) + 1 for t in (tok.decode(p) for p in pieces.tolist())])).all()


def test_characters_are_pieces_of_their_own_when_the_slots_follow_characters():
    texts = ["abc", "a", "abcde", ""]
    tok = CharTokenizer.fit(texts)
    pieces, n, words = word_pieces(*tok.batch(texts), -1, 4)
    assert words.tolist() == [3, 1, 4, 1]                           # at least one piece; the last slot takes the rest
    assert [tok.decode(p) for p in pieces.tolist()] == ["a", "b", "c", "a", "a", "b", "c", "de", ""]
    assert n.tolist() == [2, 2, 2, 2, 2, 2, 2, 3, 1]
    _, _, kept = vocabulary(["abca", "b"], tok, -1)
    assert kept == ["a", "b"]                                       # each seen twice; c once


def test_the_vocabulary_holds_the_words_seen_twice_most_frequent_first():
    texts = ["a b b c", "b c d", "c c e"]
    tok = CharTokenizer.fit(texts)
    hashes, spellings, kept = vocabulary(texts, tok, tok.stoi[" "])
    assert kept == ["c", "b"]                                       # c 4 times, b 3; a, d, e once
    assert [tok.decode(row) for row in spellings.tolist()] == kept
    tokens, lengths = tok.batch(["c b a"])
    h, words = word_hashes(tokens, lengths, tok.stoi[" "], 4)
    assert words.tolist() == [3] and h[0, :2].tolist() == hashes.tolist()


def test_pick_draws_by_the_inverse_of_the_cdf():
    logp = torch.log_softmax(torch.tensor([[2.0, 0.0, 1.0, -1.0]]), dim=1)
    assert pick(logp, torch.tensor([0.3]), temperature=0).item() == 0
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    drawn = pick(logp.expand(len(u), -1), u)
    share = torch.bincount(drawn, minlength=4).float() / len(u)
    assert torch.allclose(share, logp.exp()[0], atol=0.015)
    kept = pick(logp.expand(len(u), -1), u, top_p=0.8)              # the nucleus: the two likeliest
    assert set(kept.tolist()) == {0, 2}


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    """A small word-prior model of templated sentences, trained through the library."""
    items = sentences(400)
    tok = CharTokenizer.fit(items)
    space = tok.stoi[" "]
    hashes, spellings, _ = vocabulary(items, tok, space)
    slots = max(len(t.split(" ")) for t in items)
    cfg = ModelConfig(vocab_size=tok.vocab_size, embed_dim=16, hidden_dim=64, encoder_dim=32, slots=slots,
                      latent_dim=slots * 8 + 4, global_dim=4, slot_break=space, slot_feed=True,
                      word_prior=len(hashes), prior_hidden=32)
    torch.manual_seed(0)
    model = TextVAE(cfg)
    model.word_prior.hashes[:] = hashes
    model.word_prior.spellings[:, :spellings.shape[1]] = spellings
    run_dir = tmp_path_factory.mktemp("words")
    data = EncodedItems(items[:360], tok)
    events = list(train(model, tok, data, EncodedItems(items[360:], tok),
                        TrainConfig(max_steps=300, batch_size=32, free_bits=0.25, kl_warmup=100, recon_items=20,
                                    device="cpu"), run_dir, run=RunInfo(longest_item=max(map(len, items)))))
    return run_dir, events, items


def test_a_word_prior_model_learns_its_sentences(word_run):
    run_dir, events, items = word_run
    steps = [e for e in events if e["event"] == "step"]
    assert np.mean([e["loss"] for e in steps[-20:]]) < 0.5 * np.mean([e["loss"] for e in steps[:20]])
    m = textvae.load(run_dir)
    vocabulary_words = {w for t in items for w in t.split(" ")}
    samples = m.generate(50, seed=3)
    assert samples == m.generate(50, seed=3)                        # a seed gives the same samples
    found = [w for t in samples for w in t.split(" ")]
    assert sum(w in vocabulary_words for w in found) / len(found) >= 0.9
    assert m.reconstruct(items[:20]) == items[:20]


def test_a_path_runs_through_the_priors_noise_between_its_two_sentences(word_run):
    run_dir, _, items = word_run
    m = textvae.load(run_dir)
    model, c = m.model, m.model.config
    a, b = items[0], items[1]
    path = m.interpolate(a, b, steps=7)
    assert path[0] == m.reconstruct([a])[0] and path[-1] == m.reconstruct([b])[0]
    assert path == m.interpolate(a, b, steps=7)
    z = torch.tensor(m.encode([a, b]))
    g = z[:, c.latent_dim - c.global_dim:]
    u, words = model.places(z, m.PATH_TEMPERATURE)        # the uniforms with which the prior draws each end's words
    back = model.codes_given(g, torch.zeros_like(z), m.PATH_TEMPERATURE, uniforms=u)
    assert m.decode(back) == m.reconstruct([a, b])
    t = torch.linspace(0, 1, 7)[1:-1, None]
    inner = model.codes_given(torch.lerp(g[0], g[1], t), torch.zeros((5, c.latent_dim)), m.PATH_TEMPERATURE,
                              uniforms=(1 - t) * u[:1] + t * u[1:], lengths=(1 - t[:, 0]) * words[0] + t[:, 0] * words[1])
    assert path[1:-1] == m.decode(inner)                # each inner step: the prior's draw at that point


def test_prior_codes_end_in_empty_slots_and_come_from_their_noise(word_run):
    m = textvae.load(word_run[0])
    model, c = m.model, m.model.config
    eps = torch.randn((30, c.latent_dim), generator=torch.Generator().manual_seed(1))
    z = model.prior_sample(eps)
    assert torch.equal(z, model.prior_sample(eps))
    slots = model._slots(z)
    empty = (slots - model._empty_slot()).abs().amax(dim=2) < 1e-6                # (N, K)
    assert (~empty[:, 0]).all()                                                   # at least one word
    first_empty = empty.float().argmax(dim=1)
    assert all(empty[i, k:].all() for i, k in enumerate(first_empty.tolist()) if empty[i].any())
    assert torch.equal(z[:, c.latent_dim - c.global_dim:], eps[:, c.latent_dim - c.global_dim:])  # g is the noise


def test_the_bound_is_finite_and_tightens_with_importance_samples(word_run):
    m = textvae.load(word_run[0])
    data = EncodedItems(word_run[2][360:390], m.tokenizer)
    one, many = (iw_nll(m.model, data, samples=k, seed=0) for k in (1, 30))
    assert np.isfinite(one["iw_nll"]) and many["iw_nll"] <= one["iw_nll"] + 0.5
    assert many["kl"] > 0


def test_a_saved_word_prior_model_gives_the_same_samples_and_likelihood(word_run, tmp_path):
    m = textvae.load(word_run[0])
    save(tmp_path / "copy.safetensors", m.model, m.tokenizer, m.run, {}, {})
    again = textvae.load(tmp_path / "copy.safetensors")
    assert again.generate(20, seed=5) == m.generate(20, seed=5)
    tokens, lengths = m.tokenizer.batch(word_run[2][:8])
    z = torch.tensor(m.encode(word_run[2][:8]))
    words = m.model.word_count(tokens, lengths)
    assert torch.allclose(again.model.log_prior(z, words), m.model.log_prior(z, words))


def test_the_classes_of_words_outside_the_vocabulary_are_other():
    items = sentences(100) + ["the film is zzyzx ."]
    tok = CharTokenizer.fit(items)
    hashes, _, kept = vocabulary(items, tok, tok.stoi[" "])
    cfg = ModelConfig(vocab_size=tok.vocab_size, embed_dim=8, hidden_dim=16, slots=6, latent_dim=6 * 4 + 2,
                      global_dim=2, slot_break=tok.stoi[" "], word_prior=len(hashes), prior_hidden=8)
    model = TextVAE(cfg)
    model.word_prior.hashes[:] = hashes
    tokens, lengths = tok.batch(["the film is zzyzx ."])
    classes = model.word_prior.classes_of(word_hashes(tokens, lengths, tok.stoi[" "], 6)[0])[0]
    assert classes[:5].tolist() == [FIRST_WORD + kept.index("the"), FIRST_WORD + kept.index("film"),
                                    FIRST_WORD + kept.index("is"), OTHER, FIRST_WORD + kept.index(".")]
    assert END == 0


def test_a_checkpoint_written_before_the_word_prior_decodes_as_it_did(tmp_path):
    """A sentence model of the version before the word prior (its slot prior, fitted after training), saved by that
    version with the outputs it gave: this version loads it and gives the same texts."""
    import json
    from pathlib import Path
    data = Path(__file__).parent / "data"
    expected = json.loads((data / "slot_prior_model.json").read_text(encoding="utf-8"))
    m = textvae.load(data / "slot_prior_model.safetensors")
    assert not m.model.config.word_prior and m.model.config.slot_prior
    assert m.generate(5, seed=0) == expected["generate"]
    assert m.generate(5, seed=1, strategy="greedy") == expected["greedy"]
    assert m.reconstruct(["remarkable documentary storytelling", "magnificent characters"]) == expected["reconstruct"]
    assert m.interpolate("remarkable documentary storytelling", "magnificent characters", steps=3) == \
        expected["interpolate"]
    assert "bigram" in m.prior


def test_a_word_list_gets_a_prior_over_its_characters_and_paths_between_its_words(tiny_corpus, tmp_path):
    from click.testing import CliRunner

    from textvae.cli.commands import cli
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(tiny_corpus), "--out", str(out), "--steps", "30"],
                                    catch_exceptions=False)
    assert result.exit_code == 0, result.output
    m = textvae.load(out)
    assert m.prior.startswith("a language model over the character slots")
    words = [w for w in tiny_corpus.read_text().split() if w][:2]
    path = m.interpolate(words[0], words[1], steps=5)
    assert len(path) == 5 and path[0] == m.reconstruct([words[0]])[0] and path[-1] == m.reconstruct([words[1]])[0]
    assert all(isinstance(t, str) for t in m.generate(5, seed=0))
    # the KL weighs fully from the first step, and a few hundred items train in batches of 32, unless asked otherwise
    chose = json.loads((out / "run.json").read_text())["train_config"]
    assert (chose["kl_schedule"], chose["batch_size"]) == ("constant", 32)
    assert "the KL's full weight from the first step" in result.output
    result = CliRunner().invoke(cli, ["train", str(tiny_corpus), "--out", str(tmp_path / "linear"), "--steps", "2",
                                      "--kl-schedule", "linear"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "linear/run.json").read_text())["train_config"]["kl_schedule"] == "linear"
