"""The budget and its schedule, the training loop (it yields events, never prints), runs started or resumed, several
processes, and the throughput benchmark."""

from .. import lazy

__getattr__ = lazy(__name__, ("trainer", "run", "schedule", "distributed", "bench"))
