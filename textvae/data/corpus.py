"""Corpora in, batches out.

Reads one item per line from a text file, a column of a CSV/TSV/JSONL/Parquet file
or of a Hugging Face dataset (``hf:NAME[:CONFIG]``), optionally splits lines into
words, and serves length-bucketed batches of token ids.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .tokenizer import LONE_SURROGATE

TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".parquet"}
SPLIT_STEMS = {"train", "valid", "validation", "test", "dev", "data"}


class DataError(Exception):
    """A problem with the user's data, worded for the user."""


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
        except Exception:  # noqa: BLE001 (pyarrow raises many types; the user needs one line)
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
    except Exception as e:  # noqa: BLE001 (the library raises many types; the user needs one line)
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
