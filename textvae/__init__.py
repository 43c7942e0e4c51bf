"""textvae: a character-level text VAE toolkit (Bowman et al. 2016).

The names below are imported when first used, so that a command that needs no torch (`textvae --help`,
`textvae generate` on a CPU) starts without loading it.
"""

__version__ = "0.1.0"

_HOMES = {"Model": "api", "load": "api", "CheckpointError": "checkpoint", "DataConfig": "data", "DataError": "data",
          "Decoding": "settings", "ModelConfig": "settings", "TextVAE": "model", "CharTokenizer": "tokenizer"}

__all__ = ["CharTokenizer", "CheckpointError", "DataConfig", "DataError", "Decoding", "Model", "ModelConfig",
           "TextVAE", "__version__", "load"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'textvae' has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
