"""Items in: the tokenizer (characters <-> ids), corpora read from text, tables and the Hub, the salted hash split,
items as one flat id array, length-bucketed batches and streamed caches."""

from .. import lazy

__getattr__ = lazy(__name__, ("corpus", "tokenizer", "items", "stream", "prepare", "words"))
