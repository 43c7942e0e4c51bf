"""From codes to text: greedy, sampled and beam decoding, on torch or in numpy, and sampling from the prior."""

from .. import lazy

__getattr__ = lazy(__name__, ("engine", "beam", "loop", "arraystep", "sample"))
