"""A run's data made ready: the corpus read, split and tokenised (in memory or in a stream), and the training and
held-out items that evaluation reads again from a run's data settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..settings import DataConfig
from .corpus import TABLE_SUFFIXES, Corpus, DataError, corpus_name, items_md5, keep, read_corpus, split_valid
from .items import EncodedItems
from .stream import STREAM_THRESHOLD, stream_encode
from .tokenizer import CharTokenizer


@dataclass
class PreparedData:
    """What training needs of a corpus: the vocabulary and both splits as token ids."""
    tokenizer: CharTokenizer
    train: EncodedItems
    valid: EncodedItems
    name: str                          # short corpus name, for the run directory
    skipped: list[str]                 # what was left out and why ("12 blank"), for the user
    fingerprint: str                   # md5 of the training items (or of the stream cache)
    labels: list[str] | None = None    # label names in id order (conditional models)
    cache: str | None = None           # the stream cache directory, when streamed
    texts: list[str] | None = None     # the training items as text (not kept for a streamed corpus)
    notes: list[str] = field(default_factory=list)   # other things the user should hear (the split)

    @property
    def longest_item(self) -> int:
        return int(self.train.lengths.max())

    @property
    def mean_length(self) -> float:
        return float(self.train.lengths.mean())


def is_plain_text(source: str) -> bool:
    p = Path(source)
    return not source.startswith("hf:") and p.is_file() and p.suffix.lower() not in TABLE_SUFFIXES


def prepare(cfg: DataConfig, tokenizer: CharTokenizer | None = None, labels: list[str] | None = None,
            progress=None) -> PreparedData:
    """Read, split and tokenise `cfg.corpus`. A `tokenizer` (and `labels`) given, as when resuming or
    starting from a language model, are kept instead of fitted. Plain text files above 64 MB (or with
    `cfg.stream`) are tokenised in a stream into a memory-mapped cache keyed by their content, so their
    text never sits in memory as Python strings; `progress(items)` hears of that pass."""
    if cfg.corpus is None:
        raise DataError("no corpus to read")
    if is_plain_text(cfg.corpus) and (cfg.stream or Path(cfg.corpus).stat().st_size > STREAM_THRESHOLD):
        return _prepare_stream(cfg, tokenizer, progress)
    notes: list[str] = []
    train_items, valid_items, train_labels, valid_labels, skipped = _training_split(cfg, notes)
    tok = tokenizer or CharTokenizer.fit(train_items)
    if not cfg.label_column:
        return PreparedData(tok, EncodedItems(train_items, tok), EncodedItems(valid_items, tok),
                            corpus_name(cfg.corpus), skipped, items_md5(train_items), texts=train_items, notes=notes)
    names = labels or sorted(set(train_labels))
    index = {y: i for i, y in enumerate(names)}
    if any(y not in index for y in train_labels):
        raise DataError(f"the labels of {cfg.corpus} changed since this run started")
    return PreparedData(tok, EncodedItems(train_items, tok, [index[y] for y in train_labels]),
                        EncodedItems(valid_items, tok, [index[y] for y in valid_labels]), corpus_name(cfg.corpus),
                        skipped, items_md5([f"{x}\t{y}" for x, y in zip(train_items, train_labels)]), names,
                        texts=train_items, notes=notes)


def _prepare_stream(cfg: DataConfig, tokenizer: CharTokenizer | None, progress) -> PreparedData:
    if cfg.column or cfg.label_column:
        raise DataError("--column and --label do not apply to a plain text file")
    res = stream_encode(cfg.corpus, unit=cfg.unit, max_len=cfg.max_len, encoding=cfg.encoding, errors=cfg.errors,
                        progress=progress)
    tok = res["tokenizer"]
    if tokenizer is not None and tokenizer.itos != tok.itos:
        raise DataError(f"the corpus {cfg.corpus} changed since this run started: cannot resume it exactly")
    valid = res["valid"]
    if cfg.valid:
        valid = EncodedItems(read_corpus(cfg.valid, unit=cfg.unit, max_len=cfg.max_len, encoding=cfg.encoding,
                                         errors=cfg.errors).items, tok)
    st = res["stats"]
    skipped = [f"{st[k]:,} {what}" for k, what in (("skipped_long", f"longer than --max-len {cfg.max_len}"),
                                                   ("skipped_blank", "blank")) if st.get(k)]
    return PreparedData(tok, res["train"], valid, corpus_name(cfg.corpus), skipped, Path(res["cache"]).name,
                        cache=res["cache"])


def _read(source: str, cfg: DataConfig, label_column: str | None = None, max_len: int | None = None) -> Corpus:
    return read_corpus(source, unit=cfg.unit, column=cfg.column, max_len=max_len, encoding=cfg.encoding,
                       errors=cfg.errors, label_column=label_column)


def _training_split(cfg: DataConfig, notes: list[str]):
    """Training and validation items (and labels), and notes of what was skipped."""
    data = _read(cfg.corpus, cfg, cfg.label_column, cfg.max_len)
    if cfg.valid:
        valid_corpus = _read(cfg.valid, cfg, cfg.label_column, cfg.max_len)
        train_items, valid_items = data.items, valid_corpus.items
        train_labels, valid_labels = data.labels, valid_corpus.labels
    elif cfg.label_column:
        train_items, valid_items, train_labels, valid_labels = split_valid(data.items, labels=data.labels,
                                                                           notes=notes)
    else:
        (train_items, valid_items), train_labels, valid_labels = split_valid(data.items, notes=notes), None, None
    skipped = []
    if data.skipped_long:
        skipped.append(f"{data.skipped_long:,} longer than --max-len {cfg.max_len}")
    if data.skipped_blank:
        skipped.append(f"{data.skipped_blank:,} blank")
    if cfg.label_column:
        missing = sum(not y for y in train_labels) + sum(not y for y in valid_labels)
        train_items, train_labels = keep(train_items, train_labels, bool)
        names = set(train_labels)
        unknown = sum(1 for y in valid_labels if y and y not in names)
        valid_items, valid_labels = keep(valid_items, valid_labels, lambda y: y in names)
        if missing:
            skipped.append(f"{missing:,} with no label")
        if unknown:
            skipped.append(f"{unknown:,} validation items whose label never occurs in training")
        if not train_items:
            raise DataError(f"no item of {cfg.corpus} has a label in column {cfg.label_column!r}")
        if not valid_items:
            valid_items, valid_labels = train_items[-1:], train_labels[-1:]
    return train_items, valid_items, train_labels, valid_labels, skipped


def training_items(cfg: DataConfig, explicit: str | None = None) -> set[str] | None:
    """The items a run trained on (all of its corpus), to tell copies from new samples; None if the
    corpus is not at hand."""
    source = explicit or cfg.corpus
    if not source or (not source.startswith("hf:") and not Path(source).is_file()):
        return None
    try:
        return set(read_corpus(source, unit=cfg.unit, column=cfg.column).items)
    except DataError:
        return None


def training_split(cfg: DataConfig, explicit: str | None = None) -> list[str] | None:
    """The items a run trained on, its validation items left out (what the outside judge is fitted on), or those
    of the file `explicit`; None when the corpus is not at hand."""
    if explicit:
        try:
            return read_corpus(explicit, unit=cfg.unit, column=cfg.column).items
        except DataError:
            return None
    source = cfg.corpus
    if not source or (not source.startswith("hf:") and not Path(source).is_file()):
        return None
    try:
        return _training_split(cfg, [])[0]
    except DataError:
        return None


def held_out_items(cfg: DataConfig, label_column: str | None = None) -> tuple[list[str], list[str] | None]:
    """A run's validation items (and labels): its validation file, else the hashed share of its corpus."""
    if cfg.valid:
        corpus = read_corpus(cfg.valid, unit=cfg.unit, column=cfg.column, label_column=label_column)
        return corpus.items, corpus.labels
    if cfg.corpus and (cfg.corpus.startswith("hf:") or Path(cfg.corpus).is_file()):
        corpus = read_corpus(cfg.corpus, unit=cfg.unit, column=cfg.column, label_column=label_column)
        if label_column:
            _, items, _, labels = split_valid(corpus.items, labels=corpus.labels)
            return items, labels
        return split_valid(corpus.items)[1], None
    raise DataError("no held-out items at hand: pass --data FILE")
