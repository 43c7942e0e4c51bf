"""The words of a corpus, kept in a checkpoint: a Bloom filter of its whitespace words, so that the real-word rate
of samples can be judged without the corpus."""

from __future__ import annotations

import numpy as np


class WordSet:
    """The whitespace words of a corpus as a Bloom filter (Bloom 1970): about 10 bits a word for under 1% of
    false positives, small enough to travel inside a checkpoint, so that the real-word rate of samples can be
    judged without the corpus."""

    HASHES = 7

    def __init__(self, bits: np.ndarray, count: int):
        self.bits, self.count = bits, count           # (m / 8,) uint8, and the number of words put in

    @classmethod
    def of(cls, texts, bits_per_word: int = 10, whole: bool = False) -> WordSet:
        """The whitespace words of `texts`, or with `whole` the texts themselves."""
        words = set(texts) if whole else {w for t in texts for w in t.split()}
        m = 8 * max(8, (bits_per_word * len(words) + 7) // 8)          # a whole number of bytes
        bits = np.zeros(m // 8, dtype=np.uint8)
        if words:
            pos = cls._positions(list(words), m)
            np.bitwise_or.at(bits, pos // 8, (1 << (pos % 8)).astype(np.uint8))
        return cls(bits, len(words))

    @classmethod
    def _positions(cls, words: list[str], m: int) -> np.ndarray:
        """Bit positions of each word (double hashing on a 128-bit digest): (len(words) * HASHES,)."""
        import hashlib
        digests = np.frombuffer(b"".join(hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                                         for w in words), dtype=np.uint64).reshape(-1, 2)
        k = np.arange(cls.HASHES, dtype=np.uint64)
        with np.errstate(over="ignore"):
            return ((digests[:, :1] + k * (digests[:, 1:] | np.uint64(1))) % np.uint64(m)).astype(np.int64).ravel()

    def __contains__(self, word: str) -> bool:
        return bool(self.contains([word])[0])

    def contains(self, words: list[str]) -> np.ndarray:
        if not words:
            return np.zeros(0, dtype=bool)
        pos = self._positions(words, len(self.bits) * 8)
        found = (self.bits[pos // 8] >> (pos % 8)) & 1
        return found.reshape(-1, self.HASHES).all(axis=1)

    def to_dict(self) -> dict:
        import base64
        return {"bloom": base64.b64encode(self.bits.tobytes()).decode("ascii"), "words": self.count}

    @classmethod
    def from_dict(cls, d: dict) -> WordSet:
        import base64
        return cls(np.frombuffer(base64.b64decode(d["bloom"]), dtype=np.uint8).copy(), int(d["words"]))
