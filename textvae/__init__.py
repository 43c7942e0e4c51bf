"""textvae: a character-level text VAE toolkit (Bowman et al. 2016)."""

__version__ = "0.1.0"

from .api import Model, load  # noqa: E402
from .checkpoint import CheckpointError  # noqa: E402
from .data import DataConfig, DataError  # noqa: E402
from .decode import Decoding  # noqa: E402
from .model import ModelConfig, TextVAE  # noqa: E402
from .tokenizer import CharTokenizer  # noqa: E402

__all__ = ["Model", "load", "Decoding", "DataConfig", "ModelConfig", "TextVAE", "CharTokenizer", "CheckpointError",
           "DataError", "__version__"]
