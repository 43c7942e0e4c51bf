"""How well a model models held-out text: the likelihood's bounds, the use of the code, the held-out report, an
outside n-gram judge of fluency and the label judge."""

from .. import lazy

__getattr__ = lazy(__name__, ("metrics", "report", "judge", "classifier"))
