"""The files a run writes: checkpoints (safetensors and JSON, loaded without unpickling) and output files written
whole or not at all."""

from .. import lazy

__getattr__ = lazy(__name__, ("checkpoint", "output"))
