"""Property tests: the tokenizer on arbitrary Unicode, the reader on arbitrary bytes, CLI validation."""

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textvae.cli.commands import cli
from textvae.data.corpus import DataError, read_corpus
from textvae.data.tokenizer import UNK_ID, CharTokenizer


@given(st.lists(st.text(), min_size=1, max_size=8))
def test_tokenizer_round_trip_on_arbitrary_unicode(texts):
    tok = CharTokenizer.fit(texts)
    for t in texts:
        assert tok.decode(tok.encode(t)) == t
    assert CharTokenizer.from_dict(tok.to_dict()).itos == tok.itos


@given(st.text(min_size=1), st.text())
def test_unseen_characters_always_become_unk(train, other):
    tok = CharTokenizer.fit([train])
    ids = tok.encode(other)
    assert len(ids) == len(other)
    for c, i in zip(other, ids):
        assert (i == UNK_ID) == (c not in tok.stoi)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".txt", ".csv", ".tsv", ".jsonl"]))
def test_reader_on_arbitrary_bytes_returns_items_or_a_clear_error(tmp_path, data, suffix):
    p = tmp_path / f"f{suffix}"
    p.write_bytes(data)
    try:
        corpus = read_corpus(str(p))
    except DataError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert corpus.items and all(item and item == item.strip() for item in corpus.items)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(-5, 0), t=st.floats(max_value=-1e-6, allow_nan=False))
def test_cli_rejects_bad_numbers_with_one_line(n, t):
    runner = CliRunner()
    for args in (["generate", "-n", str(n), "--model", "x"], ["generate", "--temperature", repr(t), "--model", "x"],
                 ["interpolate", "a", "b", "--steps", str(n + 1), "--model", "x"]):
        r = runner.invoke(cli, args)
        assert r.exit_code == 2
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.output
