import math

import pytest
import torch

import textvae
from textvae.data.items import EncodedItems
from textvae.evaluation.metrics import (
    edit_distance,
    iw_nll,
    log_normal,
    posterior_stats,
    reconstruction_report,
    sample_report,
)
from textvae.model.objective import reconstruction_nll
from textvae.model.vae import decoder_inputs

ITEMS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "olive", "peach", "river",
         "ocean", "stream", "brook", "creek", "delta", "marsh", "swamp", "bayou", "lagoon", "harbor"]


def _collapse(model):
    """Make q(z|x) = N(0, I) for every x and the decoder blind to z."""
    with torch.no_grad():
        model.to_posterior.weight.zero_()
        model.to_posterior.bias.zero_()
        model.to_state.weight.zero_()
        H = model.config.embed_dim
        model.decoder.weight_ih_l0[:, H:] = 0       # the z columns of the decoder's input weights
    return model


def test_collapsed_model_has_zero_mutual_information_and_no_active_units(trained_run):
    m = textvae.load(trained_run)
    data = EncodedItems(ITEMS * 25, m.tokenizer)
    Z = m.model.config.latent_dim
    with torch.no_grad():                           # sharpen the posteriors: a model that surely uses z
        m.model.to_posterior.weight[:Z] *= 20
        m.model.to_posterior.bias[Z:] = -6.0
    before = posterior_stats(m.model, data)
    assert before["mi"] > 1.0 and before["active_units"] > 0
    after = posterior_stats(_collapse(m.model), data)
    assert abs(after["mi"]) < 0.1
    assert after["active_units"] == 0


def test_iw_bound_with_one_sample_is_the_elbo_sample_estimate(trained_run):
    m = textvae.load(trained_run)
    data = EncodedItems(ITEMS, m.tokenizer)
    got = iw_nll(m.model, data, samples=1, batch_size=len(ITEMS), seed=7)
    # the same estimate by hand: -[log p(x|z) + log p(z) - log q(z|x)] with the same z
    _, tokens, lengths = next(data.iterate(len(ITEMS)))
    with torch.no_grad():
        mu, logvar = m.model.encode(tokens, lengths)
        eps = torch.randn((1, len(ITEMS), mu.shape[1]), generator=torch.Generator().manual_seed(7))
        z = (mu + (0.5 * logvar).exp() * eps)[0]
        nll = reconstruction_nll(m.model.decode(z, decoder_inputs(tokens)), tokens)
        kl_sample = log_normal(z, mu, logvar) - log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    assert got["iw_nll"] == pytest.approx(float((nll + kl_sample).mean()), rel=1e-5)


def test_iw_bound_tightens_as_k_grows(trained_run):
    m = textvae.load(trained_run)
    data = EncodedItems(ITEMS * 3, m.tokenizer)
    k1, k10, k100 = (iw_nll(m.model, data, samples=k, seed=1)["iw_nll"] for k in (1, 10, 100))
    assert k10 < k1 and k100 <= k10 + 0.05
    elbo = iw_nll(m.model, data, samples=100, seed=1)["nll_elbo"]
    assert k100 <= elbo


def test_per_character_figures_count_eos(trained_run):
    m = textvae.load(trained_run)
    data = EncodedItems(ITEMS, m.tokenizer)
    r = iw_nll(m.model, data, samples=5)
    chars = sum(len(w) + 1 for w in ITEMS)
    assert r["chars"] == chars
    assert r["iw_nats_per_char"] == pytest.approx(r["iw_nll"] * len(ITEMS) / chars)
    assert r["perplexity"] == pytest.approx(math.exp(r["iw_nats_per_char"]))
    assert r["iw_bits_per_char"] == pytest.approx(r["iw_nats_per_char"] / math.log(2))


def test_reconstruction_and_sample_reports():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    r = reconstruction_report(["abc", "abd"], ["abc", "abx"])
    assert r["exact"] == 0.5 and r["edit_distance"] == 0.5 and r["char_accuracy"] == pytest.approx(5 / 6)
    shifted = reconstruction_report(["the film is good ."], ["a the film is good ."])   # edits, not positions
    assert shifted["char_accuracy"] == pytest.approx(1 - 2 / 18)
    s = sample_report(["apple", "zzz", "zzz", "pear"], {"apple", "pear"})
    assert s["copied"] == 0.5 and s["new"] == 0.5 and s["duplicates"] == 0.25
    assert 0 < s["distinct_2"] <= 1


def test_the_validation_objective_counts_free_bits_as_training_does(trained_run):
    from textvae.evaluation.metrics import evaluate_elbo
    m = textvae.load(trained_run)
    data = EncodedItems(ITEMS, m.tokenizer)
    plain = evaluate_elbo(m.model, data)
    assert plain["objective"] == pytest.approx(plain["nll_elbo"])              # no free bits: the -ELBO
    Z = m.model.config.latent_dim
    high = evaluate_elbo(m.model, data, free_bits=1000.0)                       # above every dimension's KL
    assert high["objective"] == pytest.approx(high["recon"] + 1000.0 * Z)
    low = evaluate_elbo(m.model, data, free_bits=1e-9)
    assert low["objective"] == pytest.approx(plain["nll_elbo"], rel=1e-6)
    assert plain["nll_elbo"] <= evaluate_elbo(m.model, data, free_bits=0.5)["objective"]
