"""textvae: a character-level text VAE toolkit (Bowman et al. 2016).

The names below are imported when first used, so that a command that needs no torch (`textvae --help`,
`textvae generate` on a CPU) starts without loading it. The package's parts (docs/GUIDE.md, "How it works"):
`data`, `model`, `decoding`, `training`, `evaluation`, `io`, `cli` and `serve`, with `api` (`textvae.load`) and
`settings` beside them.

The modules' paths before these parts (`textvae.decode`, `textvae.runs`, ...) still import, for one release: each
is the module that took its place (`OLD_PATHS`; tests/test_old_paths.py lists them).
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.abc import Loader, MetaPathFinder
from importlib.util import spec_from_loader

__version__ = "0.1.0"

_HOMES = {"Model": "api", "load": "api", "CheckpointError": "io.checkpoint", "DataConfig": "settings",
          "DataError": "data.corpus", "Decoding": "settings", "ModelConfig": "settings", "TextVAE": "model.vae",
          "CharTokenizer": "data.tokenizer", "Decoder": "decoding.engine"}

__all__ = ["CharTokenizer", "CheckpointError", "DataConfig", "DataError", "Decoder", "Decoding", "Model",
           "ModelConfig", "TextVAE", "__version__", "load"]

# old module path -> the module that took its place (to be removed in the release after next)
OLD_PATHS = {
    "arraystep": "decoding.arraystep", "bench": "training.bench", "checkpoint": "io.checkpoint",
    "classifier": "evaluation.classifier", "config": "settings", "decode": "decoding", "distributed":
    "training.distributed", "evaluate": "evaluation.report", "judge": "evaluation.judge", "loop": "decoding.loop",
    "metrics": "evaluation.metrics", "objective": "model.objective", "options": "cli.options", "output": "io.output",
    "plot": "cli.plot", "prior": "model.prior", "render": "cli.render", "runs": "training.run",
    "sample": "decoding.sample", "schedule": "training.schedule", "tokenizer": "data.tokenizer",
    "train": "training",
}


def lazy(package: str, modules: tuple[str, ...]):
    """A package's `__getattr__`: a submodule of `modules` by its name, or a name that one of them holds, imported
    when first asked for (so that importing the package loads no torch)."""
    def __getattr__(name: str):
        if name in modules:
            return import_module(f"{package}.{name}")
        if not name.startswith("__"):
            for m in modules:
                value = getattr(import_module(f"{package}.{m}"), name, _MISSING)
                if value is not _MISSING:
                    return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__


_MISSING = object()


def __getattr__(name: str):
    if name in OLD_PATHS:
        return import_module(f".{name}", __name__)
    if name not in _HOMES:
        raise AttributeError(f"module 'textvae' has no attribute {name!r}")
    value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _OldPaths(MetaPathFinder, Loader):
    """Imports `textvae.<old>` as the module of `OLD_PATHS` itself (the same object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.partition(".")
        if package != __name__ or old not in OLD_PATHS:
            return None
        return spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = import_module(f"{__name__}.{OLD_PATHS[spec.name.partition('.')[2]]}")
        spec.loader_state = module.__spec__      # the import system sets __spec__ to this spec: put it back after
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
    sys.meta_path.append(_OldPaths())
