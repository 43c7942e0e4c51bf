"""Corpora in, batches out.

Reads one item per line from a text file, a column of a CSV/TSV/JSONL/Parquet file
or of a Hugging Face dataset (``hf:NAME[:CONFIG]``), optionally splits lines into
words, and serves length-bucketed batches of token ids.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

from .config import Saved
from .tokenizer import LONE_SURROGATE, CharTokenizer, pad_batch

TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".parquet"}
SPLIT_STEMS = {"train", "valid", "validation", "test", "dev", "data"}


class DataError(Exception):
    """A problem with the user's data, worded for the user."""


UNITS = ("line", "word")


@dataclass(frozen=True)
class DataConfig(Saved):
    """Where a run's items come from and how they are read; saved in every checkpoint."""
    corpus: str | None = None         # text/table file, or hf:NAME[:CONFIG]
    valid: str | None = None          # validation file; None: a hashed 5% of the corpus
    unit: str = "line"                # an item is a whole line, or each whitespace-separated word
    column: str | None = None         # text column of a table or dataset
    label_column: str | None = None   # label column: a conditional model
    max_len: int | None = 256         # items longer than this many characters are skipped
    encoding: str = "utf-8"           # text encoding of the files
    errors: str = "strict"            # strict | replace | ignore: bytes not valid in `encoding`
    stream: bool = False              # tokenise a plain text file in a stream into a memory-mapped cache



@dataclass
class Corpus:
    items: list[str]
    name: str
    labels: list[str] | None = None   # one per item, when a label column was read
    skipped_blank: int = 0
    skipped_long: int = 0


def corpus_name(source: str) -> str:
    """A short name for a run directory: the file's stem, or its folder's for train.txt etc."""
    if source.startswith("hf:"):
        return source[3:].split(":")[0].replace("/", "_") or "hf"
    p = Path(source)
    if p.is_dir():
        return p.resolve().name
    stem = p.name.split(".")[0]
    if stem.lower() in SPLIT_STEMS and p.resolve().parent.name:
        return p.resolve().parent.name
    return stem or "corpus"


def resolve_corpus(source: str) -> tuple[str, str | None]:
    """A folder holding train.* (and valid.*) stands for its training and validation files."""
    p = Path(source)
    if source.startswith("hf:") or not p.is_dir():
        return source, None
    for suffix in (".txt", ".tsv", ".csv", ".jsonl", ".parquet"):
        train = p / f"train{suffix}"
        if train.is_file():
            for vname in ("valid", "validation", "dev"):
                valid = p / f"{vname}{suffix}"
                if valid.is_file():
                    return str(train), str(valid)
            return str(train), None
    raise DataError(f"{source} is a directory, not a file (a folder must hold train.txt or similar)")


def read_corpus(source: str, unit: str = "line", column: str | None = None,
                max_len: int | None = None, encoding: str = "utf-8", errors: str = "strict",
                label_column: str | None = None) -> Corpus:
    """Items of `source`, one per line (or word), blank ones and ones over `max_len` skipped.

    With `label_column` (tables and datasets only) each item keeps the label of its row;
    rows with a missing label get the label "" (the caller decides what to do with them).
    """
    if unit not in ("line", "word"):
        raise DataError(f"unknown unit {unit!r}: use 'line' or 'word'")
    row_labels = None
    if source.startswith("hf:"):
        lines, row_labels = _read_hub(source[3:], column, label_column)
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"file not found: {source}")
        if path.is_dir():
            raise DataError(f"{source} is a directory, not a file")
        suffix = path.suffix.lower()
        if suffix in TABLE_SUFFIXES:
            lines, row_labels = _read_table(path, suffix, column, encoding, errors, label_column)
        else:
            if column is not None or label_column is not None:
                raise DataError(f"--column and --label apply to CSV/TSV/JSONL/Parquet files, not to {path.name}")
            lines = _read_lines(path, encoding, errors)
    corpus = Corpus(items=[], name=corpus_name(source), labels=[] if row_labels is not None else None)
    for row, line in enumerate(lines):
        if line is None:
            corpus.skipped_blank += 1
            continue
        text = " ".join(line.split()) if unit == "line" else None
        pieces = [text] if unit == "line" else line.split()
        if unit == "line" and not text:
            corpus.skipped_blank += 1
            continue
        for item in pieces:
            if max_len is not None and len(item) > max_len:
                corpus.skipped_long += 1
            else:
                corpus.items.append(item)
                if row_labels is not None:
                    corpus.labels.append(row_labels[row])
    if not corpus.items:
        why = f" ({corpus.skipped_long} longer than --max-len {max_len})" if corpus.skipped_long else ""
        raise DataError(f"no items to read in {source}{why}")
    return corpus


def _decode_bytes(data: bytes, path: Path, encoding: str, errors: str) -> str:
    if b"\x00" in data[:65536] and encoding.lower().replace("-", "") in ("utf8", "utf_8"):
        raise DataError(f"{path} looks like a binary file (it holds NUL bytes), not UTF-8 text")
    try:
        text = data.decode(encoding, errors)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path} is not {encoding} text: bad byte at line {line} "
                        f"(try --encoding latin-1 or --errors replace)") from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}") from None
    return _unicode(text, errors, path).lstrip("\ufeff")


def _unicode(text: str, errors: str, path: Path, line: int = 1) -> str:
    """`text` (from line `line` of `path` on) with its lone surrogates, which are no characters (a JSON "\\ud800"
    escape, or a codec such as unicode_escape, makes them), taken as bytes not valid in the encoding are: `errors`
    strict refuses the file, naming the line; replace puts U+FFFD in their place; ignore drops them."""
    if text.isascii():
        return text
    found = LONE_SURROGATE.search(text)
    if found is None:
        return text
    if errors == "strict":
        line += text.count("\n", 0, found.start())
        raise DataError(f"{path} is not Unicode text: line {line:,} holds a lone surrogate "
                        f"(U+{ord(found.group()):04X}), not a character (try --errors replace)")
    return LONE_SURROGATE.sub("\ufffd" if errors == "replace" else "", text)


def _read_lines(path: Path, encoding: str, errors: str) -> list[str]:
    text = _decode_bytes(_read_bytes(path), path, encoding, errors)
    return [line.rstrip("\r") for line in text.split("\n")]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise DataError(f"permission denied: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None


def _pick_column(columns: Sequence[str], column: str | None, where: str) -> str:
    if column is not None:
        if column not in columns:
            raise DataError(f"no column {column!r} in {where}; columns are: {', '.join(map(str, columns))}")
        return column
    if "text" in columns:
        return "text"
    if len(columns) == 1:
        return columns[0]
    raise DataError(f"{where} has several columns ({', '.join(map(str, columns))}): choose one with --column")


def _cell(v) -> str | None:
    return None if v is None or v == "" else str(v)


def _label_of(v) -> str:
    return "" if v is None else str(v).strip()


def _read_table(path: Path, suffix: str, column: str | None, encoding: str, errors: str,
                label_column: str | None = None) -> tuple[list[str | None], list[str] | None]:
    """Text cells of the chosen column (None where empty), and the label cells if asked for."""
    if suffix == ".parquet":
        import pyarrow.parquet as pq
        try:
            schema = pq.read_schema(path)
        except Exception:
            raise DataError(f"{path} is not a readable Parquet file") from None
        col = _pick_column(schema.names, column, path.name)
        cols = [col]
        if label_column is not None:
            cols.append(_pick_column(schema.names, label_column, path.name))
        table = pq.read_table(path, columns=cols)
        texts = [_cell(v) for v in table.column(col).to_pylist()]
        labels = [_label_of(v) for v in table.column(label_column).to_pylist()] if label_column else None
        return texts, labels
    text = _decode_bytes(_read_bytes(path), path, encoding, errors)
    if suffix in (".jsonl", ".json"):
        rows, labels, col = [], [], None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path} line {number} is not valid JSON") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path} line {number} is not a JSON object")
            if col is None:
                col = _pick_column(list(obj), column, path.name)
                if label_column is not None:
                    _pick_column(list(obj), label_column, path.name)
            text = _cell(obj.get(col))          # JSON's "\ud800" escapes are read here, after the bytes' decoding
            rows.append(None if text is None else _unicode(text, errors, path, number))
            labels.append(_unicode(_label_of(obj.get(label_column)), errors, path, number) if label_column else "")
        if col is None:
            raise DataError(f"no items to read in {path}")
        return rows, (labels if label_column else None)
    delimiter = "\t" if suffix == ".tsv" else ","
    quoting = csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL
    reader = csv.reader(text.splitlines(), delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if not header:
        raise DataError(f"no items to read in {path}")
    col = _pick_column(header, column, path.name)
    j = header.index(col)
    rows = list(reader)
    texts = [_cell(row[j]) if j < len(row) else None for row in rows]
    if label_column is None:
        return texts, None
    k = header.index(_pick_column(header, label_column, path.name))
    return texts, [_label_of(row[k]) if k < len(row) else "" for row in rows]


def _read_hub(spec: str, column: str | None, label_column: str | None = None
              ) -> tuple[list[str | None], list[str] | None]:
    """`NAME[:CONFIG]` from the Hugging Face Hub (or a local dataset script/folder)."""
    name, _, config = spec.partition(":")
    try:
        import datasets
        ds = datasets.load_dataset(name, config or None, split="train")
    except Exception as e:  # the library raises many types; the user needs one line
        raise DataError(f"cannot load dataset {name!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    col = _pick_column(ds.column_names, column, f"dataset {name}")
    texts = [_cell(v) for v in ds[col]]
    if label_column is None:
        return texts, None
    lab = _pick_column(ds.column_names, label_column, f"dataset {name}")
    return texts, [_label_of(v) for v in ds[lab]]


# The split hashes each item with a salt, so that a file someone already split by the plain md5 of its lines
# (a common rule, once textvae's own) does not lose its whole validation share; if a salt still leaves too
# few items (the file was split by this very rule), the next one is taken.
SPLIT_SALTS = ("textvae-split-1|", "textvae-split-2|", "textvae-split-3|")


def in_valid_split(item: str, fraction: float = 0.05, salt: str = SPLIT_SALTS[0]) -> bool:
    """Whether `item` belongs to the validation split: decided by the md5 of its own text, salted."""
    buckets = max(2, round(1 / fraction))
    return int(hashlib.md5((salt + item).encode("utf-8", "surrogatepass")).hexdigest(), 16) % buckets == 0


def split_valid(items: Sequence[str], fraction: float = 0.05, labels: Sequence[str] | None = None,
                notes: list[str] | None = None):
    """Deterministic split into (train, valid) by `in_valid_split`; no seed is involved, so a line's
    split never changes between runs or machines. When a salt gives fewer than 1% of the items (or fewer
    than 100) to validation, the next salt is tried, and `notes` hears of it. Tiny corpora keep at least
    one validation item. With `labels`, returns (train, valid, train_labels, valid_labels)."""
    needed = min(0.01 * len(items), 100)
    for i, salt in enumerate(SPLIT_SALTS):
        flags = [in_valid_split(item, fraction, salt) for item in items]
        if sum(flags) >= needed:
            if i and notes is not None:
                notes.append(f"the usual hashed split gave too few validation items (the file looks split by it "
                             f"already); a differently salted hash gave {sum(flags):,}")
            break
    if not any(flags) and len(items) > 1:
        flags[-1] = True
    if all(flags):
        flags = [False] * len(items) if len(items) == 1 else flags
    train = [x for x, f in zip(items, flags) if not f] or list(items)
    valid = [x for x, f in zip(items, flags) if f] or list(train[-1:])     # one item: it validates itself
    if labels is None:
        return train, valid
    train_labels = [x for x, f in zip(labels, flags) if not f] or list(labels)
    valid_labels = [x for x, f in zip(labels, flags) if f] or list(train_labels[-1:])
    return train, valid, train_labels, valid_labels


def keep(items: Sequence[str], labels: Sequence[str], ok) -> tuple[list[str], list[str]]:
    """The (item, label) pairs whose label passes `ok`, as two lists."""
    pairs = [(x, y) for x, y in zip(items, labels) if ok(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def items_md5(items: Sequence[str]) -> str:
    """A fingerprint of a list of items: resuming refuses a corpus that changed since."""
    h = hashlib.md5()
    for item in items:
        h.update(item.encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


class EncodedItems:
    """Token ids of many items in one flat array: cheap to hold and to batch."""

    def __init__(self, texts: Sequence[str], tokenizer: CharTokenizer, label_ids: Sequence[int] | None = None):
        self.flat, self.offsets = tokenizer.encode_many(texts)
        self.lengths = np.diff(self.offsets)
        self.label_ids = None if label_ids is None else np.asarray(label_ids, dtype=np.int64)

    def labels_of(self, index) -> torch.Tensor | None:
        """Label ids (B,) of items `index`, or None for unlabelled data."""
        if self.label_ids is None:
            return None
        import torch
        return torch.from_numpy(self.label_ids[np.asarray(index, dtype=np.int64)])

    @classmethod
    def from_arrays(cls, flat: np.ndarray, offsets: np.ndarray) -> "EncodedItems":
        """Items already tokenised (possibly memory-mapped arrays)."""
        self = cls.__new__(cls)
        self.label_ids = None
        self.flat, self.offsets = flat, np.asarray(offsets)
        self.lengths = np.diff(self.offsets)
        return self

    def __len__(self) -> int:
        return len(self.lengths)

    def head(self, chars: int) -> "EncodedItems":
        """The first items, as many as hold `chars` characters (at least one; all of them if they fit)."""
        n = max(1, int(np.searchsorted(self.offsets[1:], chars, side="right")))
        if n >= len(self):
            return self
        part = EncodedItems.from_arrays(self.flat[:self.offsets[n]], self.offsets[:n + 1])
        part.label_ids = None if self.label_ids is None else self.label_ids[:n]
        return part

    def release_pages(self) -> None:
        """Let the kernel drop the pages of a memory-mapped corpus that batches have touched (they are
        clean and re-read on demand), so resident memory stays flat over a long epoch."""
        import mmap
        for arr in (self.flat, self.offsets):
            mm = getattr(arr, "_mmap", None)
            if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
                mm.madvise(mmap.MADV_DONTNEED)

    @property
    def num_chars(self) -> int:
        """Characters the model predicts: every character plus one <eos> per item."""
        return int(self.lengths.sum()) + len(self)

    def batch(self, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_batch(self.flat, self.offsets, np.asarray(index, dtype=np.int64))

    def batch_indices(self, batch_size: int, shuffle: bool, seed: int = 0) -> list[np.ndarray]:
        """Length-bucketed batches: items of similar length together, so padding is rare.

        Shuffled items are sorted by length inside pools of 50 batches, cut into batches,
        and the batches shuffled; the same seed gives the same batches.
        """
        n = len(self)
        if not shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i:i + batch_size] for i in range(0, n, batch_size)]
        rng = np.random.default_rng(seed)
        order = rng.permutation(n)
        pool = batch_size * 50
        batches = []
        for start in range(0, n, pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
        rng.shuffle(batches)
        return batches

    def iterate(self, batch_size: int, shuffle: bool = False, seed: int = 0
                ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        for index in self.batch_indices(batch_size, shuffle, seed):
            tokens, lengths = self.batch(index)
            yield index, tokens, lengths


# -- corpora larger than memory ------------------------------------------------------

STREAM_THRESHOLD = 64 * 2**20       # plain-text corpora above this size are read in a stream
MAX_STREAM_VALID = 20_000           # validation items kept from a streamed corpus


def cache_root() -> Path:
    import os
    base = os.environ.get("TEXTVAE_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                           os.path.expanduser("~/.cache"), "textvae")
    return Path(base)


def file_md5(path: Path, block: int = 8 * 2**20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _iter_line_chunks(path: Path, encoding: str, errors: str, block: int = 8 * 2**20):
    """Lists of decoded lines, about `block` bytes at a time; never the whole file in memory."""
    import codecs
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors)
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}") from None
    tail, line_no, first = "", 0, True
    with open(path, "rb") as f:
        while True:
            raw = f.read(block)
            final = not raw
            if first and b"\x00" in raw[:65536] and encoding.lower().replace("-", "") in ("utf8", "utf_8"):
                raise DataError(f"{path} looks like a binary file (it holds NUL bytes), not UTF-8 text")
            try:
                text = decoder.decode(raw, final=final)
            except UnicodeDecodeError as e:
                bad_line = line_no + (tail + raw[: e.start].decode(encoding, "replace")).count("\n") + 1
                raise DataError(f"{path} is not {encoding} text: bad byte near line {bad_line} "
                                f"(try --encoding latin-1 or --errors replace)") from None
            text = _unicode(text, errors, path, line_no + 1)
            if first:
                text = text.lstrip("\ufeff")
                first = False
            text = tail + text
            lines = text.split("\n")
            tail = "" if final else lines.pop()
            line_no += len(lines)
            yield [line.rstrip("\r") for line in lines]
            if final:
                return


def iter_items(source: str, encoding: str = "utf-8", errors: str = "strict") -> Iterator[tuple[int, str]]:
    """(line number, item) for each non-blank line of `source`, read a few megabytes at a time (a table file is
    read whole, as `read_corpus` does); whitespace is folded as in training."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"file not found: {source}")
    if path.is_dir():
        raise DataError(f"{source} is a directory, not a file")
    if path.suffix.lower() in TABLE_SUFFIXES:
        yield from enumerate(read_corpus(source, encoding=encoding, errors=errors).items, 1)
        return
    number = 0
    for lines in _iter_line_chunks(path, encoding, errors):
        for line in lines:
            number += 1
            text = " ".join(line.split())
            if text:
                yield number, text


def read_chunks(texts, file: str | None, max_len: int, truncate: bool = False, cut: list | None = None,
                chunk: int = 512) -> Iterator[list[str]]:
    """`texts`, then the items of `file` `chunk` at a time, read lazily and checked against `max_len` line by
    line: a line over it is a DataError naming it, or with `truncate` is cut (its number goes into `cut`)."""
    if texts:
        yield list(texts)
    if not file:
        return
    block: list[str] = []
    for number, text in iter_items(file):
        if len(text) > max_len:
            if not truncate:
                raise DataError(f"line {number:,} of {file} has {len(text):,} characters, over this model's limit "
                                f"of {max_len:,}; --truncate cuts such lines to it")
            text = text[:max_len]
            if cut is not None:
                cut.append(number)
        block.append(text)
        if len(block) == chunk:
            yield block
            block = []
    if block:
        yield block


def stream_encode(path: str, unit: str = "line", max_len: int | None = None, encoding: str = "utf-8",
                  errors: str = "strict", progress=None) -> dict:
    """Tokenise a large text file once, into memory-mapped id arrays cached by the file's content.

    Two passes over the file, a few megabytes at a time: the first writes code points and counts
    characters; the second maps code points to ids with the vocabulary fitted on the training split.
    Returns {"tokenizer", "train", "valid" (EncodedItems on memory maps), "stats", "cache"}.
    """
    src = Path(path)
    key = hashlib.md5(f"{file_md5(src)}|{unit}|{max_len}|{encoding}|{errors}|v2".encode()).hexdigest()
    cache = cache_root() / key
    done = cache / "done.json"
    if not done.is_file():
        _build_stream_cache(src, cache, unit, max_len, encoding, errors, progress)
    meta = json.loads(done.read_text())
    tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
    splits = {}
    for name in ("train", "valid"):
        flat = np.load(cache / f"{name}.ids.npy", mmap_mode="r")
        offsets = np.load(cache / f"{name}.offsets.npy", mmap_mode="r")
        splits[name] = EncodedItems.from_arrays(flat, offsets)
    if len(splits["train"]) == 0:
        raise DataError(f"no items to read in {path}")
    if len(splits["valid"]) == 0:                       # a tiny corpus: its last item validates itself
        tr = splits["train"]
        last = np.asarray(tr.flat[int(tr.offsets[-2]):int(tr.offsets[-1])])
        splits["valid"] = EncodedItems.from_arrays(last, np.array([0, len(last)], dtype=np.int64))
    return {"tokenizer": tokenizer, **splits, "stats": meta["stats"], "cache": str(cache)}


def _build_stream_cache(src: Path, cache: Path, unit: str, max_len: int | None, encoding: str, errors: str,
                        progress=None) -> None:
    import shutil
    tmp = cache.with_name(cache.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    points = {name: open(tmp / f"{name}.points", "wb") for name in ("train", "valid")}
    lengths: dict[str, list[np.ndarray]] = {"train": [], "valid": []}
    counts: dict[int, int] = {}
    stats = {"skipped_blank": 0, "skipped_long": 0, "items": 0}
    n_valid = 0
    for lines in _iter_line_chunks(src, encoding, errors):
        chunk_items: dict[str, list[str]] = {"train": [], "valid": []}
        for line in lines:
            pieces = [" ".join(line.split())] if unit == "line" else line.split()
            if unit == "line" and not pieces[0]:
                stats["skipped_blank"] += 1
                continue
            for item in pieces:
                if max_len is not None and len(item) > max_len:
                    stats["skipped_long"] += 1
                    continue
                is_valid = in_valid_split(item) and n_valid < MAX_STREAM_VALID
                n_valid += is_valid
                chunk_items["valid" if is_valid else "train"].append(item)
        for name, items in chunk_items.items():
            if not items:
                continue
            cps = np.frombuffer("".join(items).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            points[name].write(cps.tobytes())
            lengths[name].append(np.fromiter((len(t) for t in items), dtype=np.int64, count=len(items)))
            if name == "train":
                uniq, cnt = np.unique(cps, return_counts=True)
                for u, c in zip(uniq.tolist(), cnt.tolist()):
                    counts[u] = counts.get(u, 0) + c
            stats["items"] += len(items)
        if progress is not None:
            progress(stats["items"])
    for f in points.values():
        f.close()
    tokenizer = CharTokenizer(sorted(chr(c) for c in counts))
    # ids as uint16 when the vocabulary allows (half the bytes of int32); written with plain file writes,
    # a chunk at a time, so that neither pass keeps mapped pages resident
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size < 2**16 else np.int32)
    for name in ("train", "valid"):
        lens = np.concatenate(lengths[name]) if lengths[name] else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        np.save(tmp / f"{name}.offsets.npy", offsets)
        n = int(offsets[-1])
        step = 8 * 2**20
        with open(tmp / f"{name}.ids.npy", "wb") as out:
            np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                       "fortran_order": False, "shape": (n,)})
            for start in range(0, n, step):
                cps = np.fromfile(tmp / f"{name}.points", dtype=np.uint32, count=min(step, n - start),
                                  offset=start * 4)
                out.write(tokenizer._lookup(cps.astype(np.int64)).astype(dtype).tobytes())
        (tmp / f"{name}.points").unlink()
    stats["train_items"] = int(sum(len(x) for x in lengths["train"]))
    stats["valid_items"] = int(sum(len(x) for x in lengths["valid"]))
    (tmp / "done.json").write_text(json.dumps({"tokenizer": tokenizer.to_dict(), "stats": stats, "source": str(src)}))
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)


# -- a run's data, ready to train on ------------------------------------------------------

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
