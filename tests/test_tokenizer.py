import torch

from textvae.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharTokenizer


def test_round_trip_of_every_training_character():
    texts = ["hello world", "naïve café", "日本語", "emoji 🙂!"]
    tok = CharTokenizer.fit(texts)
    for t in texts:
        assert tok.decode(tok.encode(t)) == t


def test_special_tokens_come_first_and_are_distinct():
    tok = CharTokenizer.fit(["abc"])
    assert [tok.itos[i] for i in (PAD_ID, BOS_ID, EOS_ID, UNK_ID)] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert tok.vocab_size == 4 + 3


def test_unknown_characters_map_to_unk_instead_of_failing():
    tok = CharTokenizer.fit(["abc"])
    ids = tok.encode("abz")
    assert ids[-1] == UNK_ID
    assert tok.decode(ids, unk="?") == "ab?"
    assert tok.unknown_chars("abzq") == {"z", "q"}


def test_decode_stops_at_eos_and_skips_padding():
    tok = CharTokenizer.fit(["ab"])
    a, b = tok.encode("ab")
    assert tok.decode([BOS_ID, a, b, EOS_ID, a, PAD_ID]) == "ab"


def test_batch_pads_and_reports_lengths_with_eos():
    tok = CharTokenizer.fit(["abc", "a"])
    tokens, lengths = tok.batch(["abc", "a", ""])
    assert tokens.shape == (3, 4)
    assert lengths.tolist() == [4, 2, 1]
    assert tokens[0, 3] == EOS_ID and tokens[1, 1] == EOS_ID and tokens[2, 0] == EOS_ID
    assert (tokens[1, 2:] == PAD_ID).all()
    assert tokens.dtype == torch.long


def test_saved_vocabulary_rebuilds_the_same_tokenizer():
    tok = CharTokenizer.fit(["the quick brown fox", "jumps"])
    again = CharTokenizer.from_dict(tok.to_dict())
    assert again.itos == tok.itos
    assert again.encode("quick fox!") == tok.encode("quick fox!")


def test_fit_is_independent_of_item_order():
    assert CharTokenizer.fit(["ba", "c"]).itos == CharTokenizer.fit(["c", "ab"]).itos
