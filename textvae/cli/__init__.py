"""The command line: click commands, their options, and rich rendering (the only code that prints).

`commands` holds the group, its checks and the decoding commands; `training` and `examine` add theirs to it here,
so that whichever module is imported first, the group has every command."""

from .. import lazy
from . import examine, training  # noqa: F401  (their commands join the group)
from .commands import cli, main  # noqa: F401

__getattr__ = lazy(__name__, ("commands", "options", "render", "plot"))
