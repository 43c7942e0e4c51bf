"""Corpora too large for memory: a plain text file tokenised in a stream, a few megabytes at a time, into
memory-mapped arrays cached by the file's content; and the items of a `--file` input read a chunk at a time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .corpus import TABLE_SUFFIXES, DataError, _unicode, in_valid_split, read_corpus
from .items import EncodedItems
from .tokenizer import CharTokenizer

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
    points = {name: open(tmp / f"{name}.points", "wb") for name in ("train", "valid")}  # noqa: SIM115 (closed below)
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
        _write_ids(tmp, name, lengths[name], tokenizer, dtype)
    stats["train_items"] = int(sum(len(x) for x in lengths["train"]))
    stats["valid_items"] = int(sum(len(x) for x in lengths["valid"]))
    (tmp / "done.json").write_text(json.dumps({"tokenizer": tokenizer.to_dict(), "stats": stats, "source": str(src)}))
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)


def _write_ids(tmp: Path, name: str, lengths: list[np.ndarray], tokenizer: CharTokenizer, dtype: np.dtype) -> None:
    """The second pass over one split: its offsets, and its code points (`NAME.points`) mapped to ids, a chunk at
    a time, into `NAME.ids.npy`."""
    lens = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
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
