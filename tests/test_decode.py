import dataclasses

import pytest
import torch

import textvae
from textvae.data.tokenizer import EOS_ID, PAD_ID
from textvae.decoding.engine import lerp, slerp
from textvae.decoding.loop import decode_codes, filter_logits
from textvae.settings import Decoding


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
    greedy = m.decode(z, strategy="greedy")
    assert m.decode(z, strategy="sample", top_k=1, seed=5) == greedy
    assert m.decode(z, strategy="sample", top_p=1e-9, seed=5) == greedy
    assert m.decode(z, strategy="sample", temperature=0.0, seed=5) == greedy
    assert Decoding(strategy="sample", temperature=0.0).strategy == "greedy"          # one way to be greedy


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


from textvae.decoding.beam import beam_search, sequence_logprob


def test_beam_of_one_is_greedy(trained_run):
    m = textvae.load(trained_run)
    z = m.sample_prior(64, seed=2)
    greedy = decode_codes(m.model, z, max_len=20)
    assert torch.equal(beam_search(m.model, z, beam=1, max_len=20, length_penalty=0.0), greedy)


@pytest.mark.parametrize("beam", [2, 5, 10])
def test_wider_beam_never_has_lower_log_probability_than_greedy(trained_run, beam):
    m = textvae.load(trained_run)
    z = m.sample_prior(64, seed=3) * 1.5
    greedy = decode_codes(m.model, z, max_len=20)
    beamed = beam_search(m.model, z, beam=beam, max_len=20, length_penalty=0.0)
    lp_g, lp_b = sequence_logprob(m.model, z, greedy), sequence_logprob(m.model, z, beamed)
    assert (lp_b >= lp_g - 1e-4).all()
    assert (lp_b > lp_g + 1e-4).any()          # and it does find better sequences


def test_beam_results_end_properly_and_decode(trained_run):
    m = textvae.load(trained_run)
    texts = m.generate(10, strategy="beam", beam=4, seed=0)
    assert len(texts) == 10 and all(isinstance(t, str) for t in texts)
    assert m.generate(10, strategy="beam", beam=4, seed=0) == texts


def test_repetition_penalty_changes_nothing_at_one_and_something_above(trained_run):
    m = textvae.load(trained_run)
    z = m.sample_prior(50, seed=4)
    assert m.decode(z, repetition_penalty=1.0) == m.decode(z)
    assert m.decode(z, repetition_penalty=3.0) != m.decode(z)


def test_near_sampling_stays_close_to_the_text(trained_run):
    m = textvae.load(trained_run)
    mu = m.encode(["apple"])[0]
    close = m.sample_near("apple", 200, radius=0.1, seed=0).numpy()
    far = m.sample_near("apple", 200, radius=3.0, seed=0).numpy()
    d_close = ((close - mu) ** 2).sum(1).mean()
    d_far = ((far - mu) ** 2).sum(1).mean()
    assert d_close * 100 < d_far


def test_slerp_and_lerp_agree_at_the_endpoints(trained_run):
    m = textvae.load(trained_run)
    a = m.interpolate("apple", "river", steps=5, method="lerp")
    b = m.interpolate("apple", "river", steps=5, method="slerp")
    assert (a[0], a[-1]) == (b[0], b[-1])
    u = m.interpolate("apple", "apple", steps=6, unique=True)
    assert len(u) == 1


def test_analogy_of_a_text_with_itself_is_its_reconstruction(trained_run):
    m = textvae.load(trained_run)
    assert m.analogy("apple", "apple", "river") == m.reconstruct(["river"])[0]


def test_encode_keeps_input_order_across_batches(trained_run):
    m = textvae.load(trained_run)
    texts = ["a" * (i % 13 + 1) + "pple" for i in range(50)]
    whole = m.encode(texts)
    small = m.encode(texts, batch_size=7)
    assert abs(whole - small).max() < 1e-5
    assert abs(whole[3] - m.encode([texts[3]])[0]).max() < 1e-5
    torch.set_num_threads(2)                    # batches shared out between threads, one torch thread each
    try:
        shared = m.encode(texts, batch_size=7)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert abs(whole - shared).max() < 1e-5


def test_decodings_of_a_texts_code_stop_at_a_length_the_text_makes_sensible(trained_run):
    m = textvae.load(trained_run)
    m.model.to_logits.bias.data[EOS_ID] = -1e4         # a decoder that never ends: every decoding runs away
    m.run = dataclasses.replace(m.run, longest_item=30)
    texts = ["ab", "abcdefgh"]
    limits = [m.decoder.length_limit(len(t)) for t in texts]
    assert limits == [11, 20] and m.default_max_len == 30
    for strategy in ("beam", "greedy"):
        assert [len(t) for t in m.reconstruct(texts, strategy=strategy)] == limits
    assert {len(t) for t in m.interpolate("ab", "abcdefgh", steps=4)} == {20}
    assert {len(t) for t in m.generate(5, near="ab", seed=0)} == {11}
    assert {len(t) for t in m.generate(5, seed=0)} == {m.default_max_len}     # prior samples: the model's limit
    assert len(m.reconstruct(["ab"], max_len=3)[0]) == 3                     # a limit asked for is kept


def test_decoding_under_sleeping_threads_gives_the_same_text_and_leaves_the_threads(trained_run, monkeypatch):
    m = textvae.load(trained_run)
    torch.set_num_threads(2)
    try:
        before = m.reconstruct(["abc", "hello"]), m.generate(8, seed=1)
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
        assert (m.reconstruct(["abc", "hello"]), m.generate(8, seed=1)) == before
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_no_item_repeats_a_run_of_no_repeat_ngram_characters(strategy):
    """An untrained decoder loops; with the n-gram block no run of n characters comes twice in an item."""
    from textvae.decoding.engine import decode
    from textvae.model.vae import TextVAE
    from textvae.settings import ModelConfig
    torch.manual_seed(0)
    m = TextVAE(ModelConfig(12, embed_dim=8, hidden_dim=16, latent_dim=4)).eval()
    code = torch.randn(6, 4)

    def repeats(rows, n):
        items = [[t for t in row if t not in (PAD_ID, EOS_ID)] for row in rows.tolist()]
        return sum(len({tuple(s[i:i + n]) for i in range(len(s) - n + 1)}) < len(s) - n + 1 for s in items)

    g = torch.Generator().manual_seed(1)
    free = decode(m, code, Decoding(strategy=strategy, no_repeat_ngram=0), 60, g)
    assert repeats(free, 3) > 0                                  # the loops the block is for
    for n in (3, 5):
        g = torch.Generator().manual_seed(1)
        assert repeats(decode(m, code, Decoding(strategy=strategy, no_repeat_ngram=n), 60, g), n) == 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("slots,layers,feed,brk,labels", [(0, 1, False, -1, 0), (0, 2, False, -1, 2),
                                                         (4, 1, True, 5, 0), (4, 2, True, 5, 0),
                                                         (4, 1, False, -1, 2), (4, 1, True, -1, 0)])
def test_numpy_steps_give_torchs_logits_and_texts(cell, slots, layers, feed, brk, labels):
    """The CPU's decoding steps run in numpy (`arraystep`): the same logits as the model's own step, the same
    texts, whether greedy or sampled."""
    from textvae.decoding.arraystep import ArraySteps
    from textvae.decoding.engine import decode
    from textvae.model.vae import TextVAE
    from textvae.settings import ModelConfig
    torch.manual_seed(0)
    c = ModelConfig(30, cell=cell, embed_dim=8, hidden_dim=16, latent_dim=12, slots=slots, slot_span=3,
                    num_labels=labels, null_label=bool(labels), num_layers=layers, slot_feed=feed, slot_break=brk)
    m = TextVAE(c).eval()
    code = m.condition(torch.randn(6, 12), torch.tensor([0, 1, 0, 1, 0, 1]) if labels else None).detach()
    if brk >= 0:                                        # codes that end after their second word
        code[:, 2 * 3:12] = m._empty_slot().repeat(2)
    with torch.no_grad():
        for squash in ("torch", "numpy"):
            arrays = ArraySteps.of(m, squash)
            state, astate = m.initial_state(code), arrays.initial_state(code)
            for t in range(12):
                inputs = torch.randint(4, 30, (6,)) if t else torch.full((6,), 1)
                inputs[::3] = brk if brk >= 0 and t % 4 == 2 else inputs[::3]
                (logits, state), (alogits, astate) = m.step(code, inputs, state), arrays.step(code, inputs.numpy(), astate)
                torch.testing.assert_close(torch.from_numpy(alogits), logits, atol=1e-5, rtol=1e-5)
        for d in (Decoding(strategy="greedy", no_repeat_ngram=3), Decoding(strategy="sample", temperature=1.5),
                  Decoding(strategy="sample", top_k=5, top_p=0.8, repetition_penalty=1.5, no_repeat_ngram=4)):
            g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
            limits = torch.tensor([40, 3, 17, 40, 9, 25])
            assert torch.equal(decode(m, code, d, 40, g1, 8, limits),
                               decode_codes(m, code, 40, d.strategy == "greedy", d.temperature, d.top_k, d.top_p,
                                            d.repetition_penalty, g2, 8, d.no_repeat_ngram, limits))


def test_rows_that_end_early_leave_the_batch_without_changing_any_text():
    """Sampled rows of very different lengths: decoding the first m codes gives the first m texts of decoding
    all of them, though the batch sheds its ended rows at other steps."""
    from textvae.decoding.engine import decode
    from textvae.model.vae import TextVAE
    from textvae.settings import ModelConfig
    torch.manual_seed(1)
    m = TextVAE(ModelConfig(12, embed_dim=8, hidden_dim=16, latent_dim=4)).eval()
    with torch.no_grad():
        m.to_logits.bias[EOS_ID] = -2.0                  # items end after a few characters, or run long
    code = torch.randn(40, 4) * 3
    d = Decoding(strategy="sample", no_repeat_ngram=0)
    limits = torch.randint(5, 60, (40,))
    full = decode(m, code, d, 60, torch.Generator().manual_seed(2), 40, limits)
    lengths = (full != PAD_ID).sum(dim=1)
    assert lengths.min() < 6 and lengths.max() > 20                      # rows do end at very different steps
    torch_loop = decode_codes(m, code, 60, greedy=False, generator=torch.Generator().manual_seed(2), noise_width=40,
                              limits=limits)                               # tensors throughout, as on a GPU
    assert torch.equal(torch_loop, full)
    for n in (1, 7, 23):
        part = decode(m, code[:n], d, 60, torch.Generator().manual_seed(2), 40, limits[:n])
        assert torch.equal(part, full[:n])


def test_a_decoder_loaded_from_a_checkpoint_decodes_as_the_models_own(trained_run):
    from textvae.decoding import Decoder
    m = textvae.load(trained_run)
    z = m.sample_prior(6, seed=5)
    decoder = Decoder.load(trained_run)
    assert decoder.decode(z, Decoding(strategy="greedy")) == m.decode(z, strategy="greedy")
    assert decoder.decode(z, Decoding(strategy="beam", beam=3)) == m.decode(z, strategy="beam", beam=3)
    assert list(decoder.generate(5, Decoding(strategy="sample"), seed=3)) == list(m.iter_generate(5, seed=3))
