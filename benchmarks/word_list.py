"""A word list made from a corpus of sentences, to check the defaults for short items on words they were not
chosen on: `python benchmarks/word_list.py corpora/sentences_en OUT_DIR`.

Every distinct word of the corpus's train, valid and test files (letters, with an apostrophe inside, lowercased,
2-20 characters) goes to OUT_DIR/test.txt, valid.txt or train.txt by md5(word) % 20 (0, 1, the rest), as the
bundled corpora were split. Then `textvae train OUT_DIR`, `textvae train OUT_DIR --lm`, `textvae evaluate
OUT_DIR/test.txt --model RUN` and `python benchmarks/sentences.py RUN --data OUT_DIR/test.txt`.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def split_words(corpus: Path) -> dict[str, list[str]]:
    words = set()
    for part in ("train", "valid", "test"):
        path = corpus / f"{part}.txt"
        if path.exists():
            words.update(w.lower() for line in path.read_text(encoding="utf-8").splitlines()
                         for w in WORD.findall(line) if 2 <= len(w) <= 20)
    out: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for w in sorted(words):
        bucket = int(hashlib.md5(w.encode()).hexdigest(), 16) % 20
        out["test" if bucket == 0 else "valid" if bucket == 1 else "train"].append(w)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="a folder with train.txt (and valid.txt, test.txt) of sentences")
    ap.add_argument("out", type=Path, help="the folder to write the word list's train/valid/test.txt into")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for part, words in split_words(a.corpus).items():
        (a.out / f"{part}.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
        print(f"{part}: {len(words):,} words")


if __name__ == "__main__":
    main()
