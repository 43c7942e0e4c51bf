import json

import pytest

from textvae.data.corpus import DataError, corpus_name, read_corpus, resolve_corpus, split_valid
from textvae.data.items import EncodedItems
from textvae.data.stream import iter_items
from textvae.data.tokenizer import PAD_ID, CharTokenizer


def test_text_file_skips_blank_lines_and_handles_crlf(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"alpha\r\n\r\n  beta  \ngamma delta\n\n")
    c = read_corpus(str(p))
    assert c.items == ["alpha", "beta", "gamma delta"]
    assert c.skipped_blank >= 2


def test_word_unit_splits_lines_into_words(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("the cat sat\non the mat\n")
    assert read_corpus(str(p), unit="word").items == ["the", "cat", "sat", "on", "the", "mat"]


def test_items_longer_than_max_len_are_skipped_and_counted(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("short\nmuch too long a line\nok\n")
    c = read_corpus(str(p), max_len=5)
    assert c.items == ["short", "ok"] and c.skipped_long == 1


@pytest.mark.parametrize("suffix,body", [
    (".csv", 'id,text\n1,"hello, world"\n2,second\n'),
    (".tsv", "id\ttext\n1\thello, world\n2\tsecond\n"),
    (".jsonl", '{"id": 1, "text": "hello, world"}\n{"id": 2, "text": "second"}\n'),
])
def test_table_formats_read_the_text_column(tmp_path, suffix, body):
    p = tmp_path / f"c{suffix}"
    p.write_text(body)
    assert read_corpus(str(p)).items == ["hello, world", "second"]
    assert read_corpus(str(p), column="id").items == ["1", "2"]


def test_parquet_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    p = tmp_path / "c.parquet"
    pq.write_table(pa.table({"review": ["good film", "bad film"], "stars": [5, 1]}), p)
    assert read_corpus(str(p), column="review").items == ["good film", "bad film"]


def test_unknown_column_names_the_columns_there_are(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="no column 'text'.*a, b"):
        read_corpus(str(p), column="text")


def test_hugging_face_loader_reads_a_local_dataset_folder(tmp_path):
    folder = tmp_path / "mydata"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps({"sentence": s}) for s in ["one two", "three"]))
    c = read_corpus(f"hf:{folder}", column="sentence")
    assert c.items == ["one two", "three"]


@pytest.mark.parametrize("content,message", [
    (b"", "no items"),
    (b"\n\n  \n", "no items"),
    (b"caf\xe9\nok\n", "not utf-8 text: bad byte at line 1"),
    (b"ok\nline two\n\xff\xfe\x00x", "binary|not utf-8"),
])
def test_bad_files_raise_one_clear_error(tmp_path, content, message):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(DataError, match=f"(?i){message}"):
        read_corpus(str(p))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_corpus(str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="directory"):
        read_corpus(str(tmp_path))
    with pytest.raises(DataError, match="directory"):
        resolve_corpus(str(tmp_path))


def test_folder_with_train_and_valid_files(tmp_path):
    (tmp_path / "train.txt").write_text("a\n")
    (tmp_path / "valid.txt").write_text("b\n")
    assert resolve_corpus(str(tmp_path)) == (str(tmp_path / "train.txt"), str(tmp_path / "valid.txt"))
    assert corpus_name(str(tmp_path / "train.txt")) == tmp_path.name
    assert corpus_name("reviews.txt") == "reviews"


def test_split_is_deterministic_and_disjoint():
    items = [f"item {i}" for i in range(2000)]
    train, valid = split_valid(items)
    assert (train, valid) == split_valid(items)
    assert set(train).isdisjoint(valid)
    assert 50 < len(valid) < 150
    assert split_valid(items[::-1])[1] == valid[::-1]   # an item's split depends on its text alone


def test_length_bucketed_batches_cover_every_item_once():
    tok = CharTokenizer.fit(["abcdef"])
    items = ["a" * (i % 17 + 1) for i in range(1000)]
    data = EncodedItems(items, tok)
    batches = data.batch_indices(32, shuffle=True, seed=3)
    flat = sorted(i for b in batches for i in b.tolist())
    assert flat == list(range(1000))
    assert [b.tolist() for b in batches] == [b.tolist() for b in data.batch_indices(32, shuffle=True, seed=3)]
    # bucketing keeps padding small: most of each batch is real characters
    real = sum(int(data.lengths[b].sum()) + len(b) for b in batches)
    padded = sum(data.batch(b)[0].numel() for b in batches)
    assert real / padded > 0.9
    tokens, lengths = data.batch(batches[0])
    assert ((tokens != PAD_ID).sum(dim=1) == lengths).all()


def test_labels_stay_aligned_with_their_items(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("text\tlabel\nhello\tpos\n\tneg\nbye now\tneg\nlonger than ten\tpos\nx\t\n")
    c = read_corpus(str(p), label_column="label", max_len=10)
    assert c.items == ["hello", "bye now", "x"]
    assert c.labels == ["pos", "neg", ""]
    w = read_corpus(str(p), label_column="label", unit="word")
    assert list(zip(w.items, w.labels))[:4] == [("hello", "pos"), ("bye", "neg"), ("now", "neg"), ("longer", "pos")]


def test_split_with_labels_keeps_pairs():
    items = [f"item {i}" for i in range(500)]
    labels = [str(i % 3) for i in range(500)]
    tr, va, trl, val = split_valid(items, labels=labels)
    assert all(lab == str(int(it.split()[1]) % 3) for it, lab in zip(va + tr, val + trl))
    assert (tr, va) == split_valid(items)


def test_streamed_corpus_matches_the_in_memory_reader(tmp_path, monkeypatch):
    from textvae.data.stream import stream_encode
    monkeypatch.setenv("TEXTVAE_CACHE", str(tmp_path / "cache"))
    lines = [f"line number {i} " + "é" * (i % 5) + ("" if i % 7 else "   ") for i in range(5000)] + ["", "x" * 300]
    p = tmp_path / "big.txt"
    p.write_text("\r\n".join(lines[:100]) + "\n" + "\n".join(lines[100:]) + "\n", encoding="utf-8")
    res = stream_encode(str(p), max_len=256, progress=lambda n: None)
    corpus = read_corpus(str(p), max_len=256)
    train, valid = split_valid(corpus.items)
    tok = res["tokenizer"]
    assert tok.itos == CharTokenizer.fit(train).itos
    assert len(res["train"]) == len(train) and len(res["valid"]) == len(valid)
    for k in (0, 17, len(train) - 1):
        assert tok.decode(res["train"].batch([k])[0][0].tolist()) == train[k]
    assert res["stats"]["skipped_long"] == corpus.skipped_long == 1
    assert res["stats"]["skipped_blank"] == corpus.skipped_blank
    again = stream_encode(str(p), max_len=256)              # the second time comes from the cache
    assert again["cache"] == res["cache"] and len(again["train"]) == len(train)
    p.write_text("changed\n")
    assert stream_encode(str(p), max_len=256)["cache"] != res["cache"]


def test_a_file_already_split_by_a_hash_still_gets_a_real_validation_split():
    import hashlib
    items = [f"review number {i} says something" for i in range(4000)]
    # the training half of a file split by the plain md5 rule (bucket 1 of 20 held out)
    plain_train = [x for x in items if int(hashlib.md5(x.encode()).hexdigest(), 16) % 20 != 1]
    notes = []
    train, valid = split_valid(plain_train, notes=notes)
    assert len(valid) > 0.03 * len(plain_train) and not notes
    # the training part of textvae's own split: the next salt takes over, and says so
    notes = []
    train2, valid2 = split_valid(train, notes=notes)
    assert len(valid2) > 0.03 * len(train) and notes and "too few" in notes[0]
    assert not set(train2) & set(valid2)


def test_head_keeps_the_first_items_that_fit_a_number_of_characters():
    import numpy as np
    import torch
    items = ["ab", "cde", "f", "ghij"]
    data = EncodedItems(items, CharTokenizer.fit(items), label_ids=[0, 1, 0, 1])
    assert [len(data.head(c)) for c in (0, 2, 5, 6, 10, 100)] == [1, 1, 2, 3, 4, 4]
    part = data.head(6)
    tokens, lengths = part.batch(np.arange(3))
    want_tokens, want_lengths = data.batch(np.arange(3))
    assert torch.equal(tokens, want_tokens) and torch.equal(lengths, want_lengths)
    assert part.labels_of([0, 1, 2]).tolist() == [0, 1, 0]


def test_text_that_is_not_unicode_is_refused_replaced_or_dropped_as_errors_says(tmp_path):
    """A lone surrogate (a JSON "\\ud800" escape, or a codec like unicode_escape) is no character: --errors treats it
    as it treats bytes not valid in the encoding, in every reader."""
    jsonl, escaped = tmp_path / "c.jsonl", tmp_path / "c.txt"
    jsonl.write_text('{"text": "alpha"}\n{"text": "be\\ud800ta"}\n')
    escaped.write_text("alpha\nbe\\ud800ta\n")
    for path, encoding in ((jsonl, "utf-8"), (escaped, "unicode_escape")):
        with pytest.raises(DataError, match="line 2 holds a lone surrogate"):
            read_corpus(str(path), encoding=encoding)
        assert read_corpus(str(path), encoding=encoding, errors="replace").items == ["alpha", "be\ufffdta"]
        assert read_corpus(str(path), encoding=encoding, errors="ignore").items == ["alpha", "beta"]
    with pytest.raises(DataError, match="line 2 holds a lone surrogate"):
        list(iter_items(str(escaped), encoding="unicode_escape"))          # the reader of reconstruct --file
