import pytest
import torch

import textvae
from textvae.decode import decode_codes, filter_logits, lerp, slerp
from textvae.tokenizer import EOS_ID, PAD_ID


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert (~torch.isinf(filter_logits(logits, top_p=1e-9))).sum() == 1


def test_greedy_decoding_is_deterministic_and_stops_at_eos(trained_run):
    m = textvae.load(trained_run)
    z = m.sample_prior(16, seed=0)
    a = decode_codes(m.model, z, max_len=20)
    assert torch.equal(a, decode_codes(m.model, z, max_len=20))
    for row in a.tolist():
        if EOS_ID in row:
            assert all(t == PAD_ID for t in row[row.index(EOS_ID) + 1:])


def test_greedy_limits_of_sampling_equal_greedy(trained_run):
    m = textvae.load(trained_run)
    z = m.sample_prior(32, seed=1)
    greedy = m.decode(z, greedy=True)
    assert m.decode(z, greedy=False, top_k=1, seed=5) == greedy
    assert m.decode(z, greedy=False, top_p=1e-9, seed=5) == greedy
    assert m.decode(z, greedy=False, temperature=0.0, seed=5) == greedy


def test_sampling_with_a_seed_repeats(trained_run):
    m = textvae.load(trained_run)
    assert m.generate(20, seed=3) == m.generate(20, seed=3)
    assert m.generate(20, seed=3) != m.generate(20, seed=4)
    assert len(m.generate(7, seed=0)) == 7


def test_homotopy_endpoints_are_the_codes():
    a, b = torch.randn(8), torch.randn(8)
    for f in (lerp, slerp):
        path = f(a, b, 5)
        assert path.shape == (5, 8)
        torch.testing.assert_close(path[0], a)
        torch.testing.assert_close(path[-1], b)


def test_interpolation_endpoints_are_reconstructions(trained_run):
    m = textvae.load(trained_run)
    path = m.interpolate("apple", "river", steps=4)
    assert len(path) == 4
    assert path[0] == m.reconstruct(["apple"])[0] and path[-1] == m.reconstruct(["river"])[0]
    with pytest.raises(ValueError):
        m.interpolate("a", "b", steps=1)


def test_encode_shape_and_decode_of_means_is_reconstruct(trained_run):
    m = textvae.load(trained_run)
    mu = m.encode(["apple", "pear", "zzz"])
    assert mu.shape == (3, m.latent_dim)
    assert m.decode(mu) == m.reconstruct(["apple", "pear", "zzz"])
