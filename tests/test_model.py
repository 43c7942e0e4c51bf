import pytest
import torch

from textvae.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, CharTokenizer
from textvae.model.vae import TextVAE, decoder_inputs, reparameterize
from textvae.settings import ModelConfig


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers,bidirectional,z_every_step", [(1, True, True), (2, False, False)])
def test_shapes(cell, layers, bidirectional, z_every_step):
    tok = CharTokenizer.fit(["hello", "world"])
    cfg = ModelConfig(tok.vocab_size, cell=cell, embed_dim=8, hidden_dim=16, latent_dim=4, num_layers=layers,
                      bidirectional=bidirectional, z_every_step=z_every_step)
    model = TextVAE(cfg)
    tokens, lengths = tok.batch(["hello", "wor", "w"])
    out = model(tokens, lengths)
    assert out.logits.shape == (3, tokens.shape[1], tok.vocab_size)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, 4)
    logits, _ = model.step(out.z, torch.full((3,), BOS_ID), model.initial_state(out.z))
    assert logits.shape == (3, tok.vocab_size)


def test_padding_does_not_change_an_items_code_or_logits():
    tok = CharTokenizer.fit(["abcdefgh"])
    torch.manual_seed(0)
    model = TextVAE(ModelConfig(tok.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=4)).eval()
    alone, alone_len = tok.batch(["abc"])
    padded, padded_len = tok.batch(["abc", "abcdefgh"])
    out1 = model(alone, alone_len, sample=False)
    out2 = model(padded, padded_len, sample=False)
    torch.testing.assert_close(out1.mu[0], out2.mu[0])
    torch.testing.assert_close(out1.logits[0], out2.logits[0, : alone.shape[1]])


def test_decoder_inputs_shift_right_behind_bos():
    tokens = torch.tensor([[5, 6, 2, 0]])
    assert decoder_inputs(tokens).tolist() == [[BOS_ID, 5, 6, 2]]


def test_reparameterize_has_the_posterior_moments():
    mu = torch.full((20000, 2), 3.0)
    logvar = torch.log(torch.full((20000, 2), 0.25))
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert abs(z.mean().item() - 3.0) < 0.02 and abs(z.std().item() - 0.5) < 0.02


def test_language_model_mode_has_no_latent_code():
    tok = CharTokenizer.fit(["hello"])
    model = TextVAE(ModelConfig(tok.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=4, lm=True))
    tokens, lengths = tok.batch(["hello", "he"])
    out = model(tokens, lengths)
    assert (out.mu == 0).all() and (out.logvar == 0).all()
    assert not hasattr(model, "encoder")


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="cell"):
        ModelConfig(10, cell="transformer")
    with pytest.raises(ValueError, match="hidden_dim"):
        ModelConfig(10, hidden_dim=0)


def test_encoder_width_defaults_to_half_the_decoder_and_old_configurations_keep_theirs():
    tok = CharTokenizer.fit(["hello"])
    fresh = ModelConfig(tok.vocab_size, hidden_dim=64)
    assert fresh.encoder_dim == 32
    assert TextVAE(fresh).encoder.hidden_size == 32
    assert ModelConfig.from_dict(fresh.to_dict()) == fresh
    old = fresh.to_dict()
    del old["encoder_dim"]                   # a checkpoint written before the encoder had its own width
    assert ModelConfig.from_dict(old).encoder_dim == 64
    assert TextVAE(ModelConfig(tok.vocab_size, hidden_dim=64, encoder_dim=48)).encoder_reverse.hidden_size == 48
    with pytest.raises(ValueError, match="encoder_dim"):
        ModelConfig(10, encoder_dim=0)


def test_a_vae_started_from_a_language_model_begins_as_that_model():
    tok = CharTokenizer.fit(["hello", "world"])
    torch.manual_seed(0)
    lm = TextVAE(ModelConfig(tok.vocab_size, hidden_dim=24, embed_dim=8, lm=True))
    vae = TextVAE(ModelConfig(tok.vocab_size, hidden_dim=24, embed_dim=8, latent_dim=4))
    inputs = torch.tensor([[1, 5, 6, 7], [1, 7, 7, 5]])
    z = torch.randn(2, 4)
    assert not torch.allclose(vae.decode(z, inputs), lm.decode(torch.zeros(2, 4), inputs))
    vae.start_decoder_from(lm, code_scale=0.0)
    assert torch.allclose(vae.decode(z, inputs), lm.decode(torch.zeros(2, 4), inputs), atol=1e-6)
    fresh = TextVAE(ModelConfig(tok.vocab_size, hidden_dim=24, embed_dim=8, latent_dim=4))
    fresh.start_decoder_from(lm)                    # the code's weights small but not zero: z matters a little
    assert not torch.allclose(fresh.decode(z, inputs), fresh.decode(-z, inputs))
    with pytest.raises(ValueError, match="hidden_dim"):
        TextVAE(ModelConfig(tok.vocab_size, hidden_dim=16, embed_dim=8)).start_decoder_from(lm)
    with pytest.raises(ValueError, match="language model"):
        vae.start_decoder_from(vae)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("labels", [0, 2])
@pytest.mark.parametrize("slots,layers,feed,brk", [(4, 1, False, -1), (4, 2, False, -1), (0, 2, False, -1),
                                                  (4, 1, True, -1), (4, 1, False, 5), (4, 2, True, 5)])
def test_decoding_step_by_step_gives_the_teacher_forced_logits(cell, labels, slots, layers, feed, brk):
    """Also for codes of slots fed into the decoder's input, and slots that follow words (token 5 breaks)."""
    torch.manual_seed(0)
    c = ModelConfig(30, cell=cell, embed_dim=8, hidden_dim=16, latent_dim=12, slots=slots, slot_span=3,
                    num_labels=labels, null_label=bool(labels), num_layers=layers, slot_feed=feed, slot_break=brk)
    m = TextVAE(c).eval()
    tokens = torch.randint(4, 30, (5, 11))
    lengths = torch.tensor([11, 7, 3, 1, 9])
    for i, n in enumerate(lengths):
        tokens[i, n:] = PAD_ID
    y = torch.tensor([0, 1, 0, 1, 0]) if labels else None
    out = m(tokens, lengths, labels=y, sample=False)
    assert out.mu.shape == (5, 12) and out.logits.shape == (5, 11, 30)
    code, inputs = m.condition(out.z, y), decoder_inputs(tokens)
    state, steps = m.initial_state(code), []
    for t in range(inputs.shape[1]):
        logits, state = m.step(code, inputs[:, t], state)
        steps.append(logits)
    stepped, forced = torch.stack(steps, dim=1), m.decode_code(code, inputs)
    if feed and brk >= 0:     # in and past the code's last word, a decoding ends where a break would come
        inside = torch.arange(inputs.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)      # (step moves the break's
        others = [v for v in range(30) if v not in (EOS_ID, brk)]                       # odds to <eos>): the rest
        stepped, forced = stepped[inside][:, others], forced[inside][:, others]
    torch.testing.assert_close(stepped, forced, atol=1e-5, rtol=1e-5)
    padded = torch.cat([tokens, torch.zeros(5, 4, dtype=torch.long)], dim=1)     # padding changes no code
    torch.testing.assert_close(m.encode(padded, lengths, y)[0], out.mu, atol=1e-5, rtol=1e-5)


def test_a_fitted_prior_samples_like_the_codes_it_was_fitted_to():
    torch.manual_seed(0)
    m = TextVAE(ModelConfig(20, embed_dim=8, hidden_dim=16, latent_dim=4, fitted_prior=True))
    mean, scale = torch.tensor([2.0, -1.0, 0.0, 0.5]), torch.tensor([0.5, 1.0, 2.0, 0.1])
    mu = mean + scale * torch.randn(20_000, 4)
    m.fit_prior(mu, torch.full((20_000, 4), -20.0))
    z = m.prior_sample(torch.randn(20_000, 4))
    torch.testing.assert_close(z.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), scale, atol=0.05, rtol=0.05)
    plain = TextVAE(ModelConfig(20, embed_dim=8, hidden_dim=16, latent_dim=4))
    eps = torch.randn(3, 4)
    assert torch.equal(plain.prior_sample(eps), eps)                  # N(0, I) unless fitted
    from textvae.decoding.arraystep import ArraySteps  # generation's numpy prior: the same codes
    torch.testing.assert_close(torch.from_numpy(ArraySteps.of(m, "numpy").prior(eps.numpy())), m.prior_sample(eps))
    assert torch.equal(torch.from_numpy(ArraySteps.of(plain, "numpy").prior(eps.numpy())), eps)


def test_the_slot_prior_samples_codes_of_the_words_and_sequences_it_was_fitted_to():
    torch.manual_seed(0)
    c = ModelConfig(30, embed_dim=8, hidden_dim=16, latent_dim=12, slots=4, slot_break=5, slot_feed=True,
                    slot_prior=8)
    m = TextVAE(c).eval()
    empty = m.to_posterior.bias[:3].detach()
    words = {w: torch.randn(3) for w in "ABCD"}
    corpus = ["AB", "ABC", "BA", "ABCD", "DB"] * 40            # sentences of word codes
    mu = torch.stack([torch.cat([words[w] for w in s] + [empty] * (4 - len(s))) for s in corpus])
    m.fit_slot_prior(mu + 0.01 * torch.randn_like(mu), torch.tensor([len(s) for s in corpus]))
    eps = torch.randn(500, 12, generator=torch.Generator().manual_seed(1))
    z = m.prior_sample(eps)
    torch.testing.assert_close(z, m.prior_sample(eps))          # the same noise, the same codes
    from textvae.decoding.arraystep import ArraySteps  # and generation's numpy prior draws them too
    assert torch.equal(torch.from_numpy(ArraySteps.of(m, "numpy").prior(eps.numpy())), z)
    seen = set()
    for row in z.view(500, 4, 3):
        names = []
        for slot in row:
            if (slot - empty).abs().max() < 1e-6:
                break
            names.append(min(words, key=lambda w: float((words[w] - slot).norm())))
            assert float((words[names[-1]] - slot).norm()) < 0.1        # a member's code, not a blend
        seen.add("".join(names))
        assert len(names) == len(row) or all((s - empty).abs().max() < 1e-6 for s in row[len(names):])
    # every sampled sentence is made of bigrams of the corpus, with its lengths (2 to 4 words)
    bigrams = {s[i:i + 2] for s in corpus for i in range(len(s) - 1)}
    assert seen >= {"AB", "BA", "DB"} and all(2 <= len(s) <= 4 for s in seen)
    assert all(s[i:i + 2] in bigrams for s in seen for i in range(len(s) - 1)), seen
    # a decoding past the code's last word ends: a code of two words, after the second break
    code = torch.cat([words["A"], words["B"], empty, empty]).unsqueeze(0)
    state = m.initial_state(code)
    for token in [1, 7]:                                        # <bos> x: the first word, anything goes
        logits, state = m.step(code, torch.tensor([token]), state)
        assert torch.isfinite(logits).all()
    for token in [5, 8]:                                        # _ y: the last word: no break, <eos> may come
        logits, state = m.step(code, torch.tensor([token]), state)
        assert torch.isinf(logits[0, 5]) and torch.isfinite(logits[0, 2]) and torch.isfinite(logits[0, 6:]).all()
    logits, state = m.step(code, torch.tensor([5]), state)      # a second break all the same: past the last word
    assert int(logits.argmax()) == 2 and torch.isinf(logits[0, 3:]).all()
