import math

import pytest
import torch

from textvae.data.tokenizer import BOS_ID, PAD_ID, UNK_ID
from textvae.model.objective import KLSchedule, character_dropout, elbo_terms, kl_divergence, reconstruction_nll


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(kl_divergence(mu, logvar), torch.distributions.kl_divergence(q, p))
    assert kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def test_reconstruction_ignores_padding():
    logits = torch.randn(2, 4, 6)
    targets = torch.tensor([[4, 5, 2, 0], [4, 2, 0, 0]])
    nll = reconstruction_nll(logits, targets)
    by_hand = -logits.log_softmax(-1)[1, torch.arange(2), targets[1, :2]].sum()
    torch.testing.assert_close(nll[1], by_hand)


def test_schedules():
    assert KLSchedule("constant", 100)(0) == 1.0
    lin = KLSchedule("linear", 100)
    assert lin(0) == 0.0 and lin(50) == pytest.approx(0.5) and lin(1000) == 1.0
    logi = KLSchedule("logistic", 100)
    assert logi(0) < 0.01 and logi(50) == pytest.approx(0.5) and logi(100) > 0.99
    cyc = KLSchedule("cyclical", 100, beta_max=2.0)
    assert cyc(0) == 0.0 and cyc(25) == pytest.approx(1.0) and cyc(60) == 2.0 and cyc(100) == 0.0
    with pytest.raises(ValueError):
        KLSchedule("sawtooth")


def test_free_bits_remove_the_pull_on_dimensions_below_the_threshold():
    mu = torch.tensor([[0.1, 3.0]], requires_grad=True)       # dim 0: KL 0.005 nats, dim 1: 4.5 nats
    logvar = torch.zeros(1, 2, requires_grad=True)
    logits, targets = torch.zeros(1, 1, 4), torch.tensor([[2]])
    terms = elbo_terms(logits, targets, mu, logvar, beta=1.0, free_bits=0.5)
    terms["loss"].backward()
    assert mu.grad[0, 0] == 0 and mu.grad[0, 1] > 0
    assert terms["kl"].item() == pytest.approx(0.005 + 4.5)
    assert terms["loss"].item() == pytest.approx(math.log(4) + 0.5 + 4.5)


def test_character_dropout_rate_and_what_it_never_touches():
    inputs = torch.full((200, 50), 7)
    inputs[:, 0] = BOS_ID
    inputs[:, 40:] = PAD_ID
    out = character_dropout(inputs, 0.3, torch.Generator().manual_seed(0))
    assert (out[:, 0] == BOS_ID).all() and (out[:, 40:] == PAD_ID).all()
    rate = (out[:, 1:40] == UNK_ID).float().mean().item()
    assert 0.27 < rate < 0.33
    assert character_dropout(inputs, 0.0) is inputs
