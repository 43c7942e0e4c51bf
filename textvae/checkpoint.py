"""Save and load a self-sufficient model: one safetensors file.

The file holds the weights as plain tensors and, in its text metadata, the format
version, the model configuration, the vocabulary and whatever the trainer adds
(training configuration, metrics). Loading parses JSON and raw tensors only: nothing
is ever unpickled. Saving writes a temporary file, flushes it to disk and renames it
over the old one, so a save that is interrupted leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .model import ModelConfig, TextVAE
from .tokenizer import CharTokenizer

FORMAT = "textvae-checkpoint"
FORMAT_VERSION = 1
# Refuse to build a model larger than this many parameters from an untrusted file.
MAX_PARAMETERS = 2_000_000_000
CHECKPOINT_NAMES = ("best.safetensors", "last.safetensors")


class CheckpointError(Exception):
    """A file that is not a usable textvae checkpoint, worded for the user."""


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync, then rename onto `path`: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path, model: TextVAE, tokenizer: CharTokenizer, extra: dict | None = None) -> Path:
    """Write `model` and `tokenizer` (and `extra`, any JSON-able dict) to one file at `path`."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(model.config.to_dict()),
        "tokenizer": json.dumps(tokenizer.to_dict(), ensure_ascii=False),
        "extra": json.dumps(extra or {}, ensure_ascii=False),
    }
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def resolve(path) -> Path:
    """A checkpoint file from a file path or a run directory (its best, else its last, checkpoint)."""
    p = Path(path)
    if p.is_dir():
        for name in CHECKPOINT_NAMES:
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{path} is a directory with no checkpoint in it (no best.safetensors or last.safetensors)")
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    return p


def read_metadata(path) -> dict:
    """The metadata of a checkpoint file, checked, without reading its tensors."""
    p = resolve(path)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{p} is not a textvae checkpoint (file too short)")
            n = int.from_bytes(head, "little")
            size = p.stat().st_size
            if n <= 0 or n > min(size - 8, 100_000_000):
                raise CheckpointError(f"{p} is not a textvae checkpoint (not a safetensors file)")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{p} is not a textvae checkpoint (unreadable header)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a textvae checkpoint")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{p} has checkpoint format version {meta.get('format_version')!r}; "
                              f"this textvae reads version {FORMAT_VERSION}")
    return meta


def load(path, device: str | torch.device = "cpu") -> tuple[TextVAE, CharTokenizer, dict]:
    """model, tokenizer, extra = load(path): everything generate and interpolate need."""
    p = resolve(path)
    meta = read_metadata(p)
    try:
        config = ModelConfig.from_dict(json.loads(meta["model_config"]))
        tokenizer = CharTokenizer.from_dict(json.loads(meta["tokenizer"]))
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{p} has a damaged configuration: {e}") from None
    if config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(f"{p} is inconsistent: model vocabulary {config.vocab_size}, "
                              f"tokenizer {tokenizer.vocab_size}")
    with torch.device("meta"):
        skeleton = TextVAE(config)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if sum(torch.Size(s).numel() for s in expected.values()) > MAX_PARAMETERS:
        raise CheckpointError(f"{p} describes a model of over {MAX_PARAMETERS:,} parameters; refusing to build it")
    try:
        tensors = load_file(p, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{p} is damaged or truncated ({str(e).splitlines()[0][:120]})") from None
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got)) or sorted(k for k in got if got[k] != expected.get(k))
        raise CheckpointError(f"{p} does not match its configuration (first mismatch: {missing[:1]})")
    model = TextVAE(config)
    model.load_state_dict(tensors)
    model.to(device).eval()
    return model, tokenizer, extra


# -- resumable training state ------------------------------------------------------

RESUME_FORMAT = "textvae-resume"
RESUME_NAME = "resume.safetensors"


def save_training_state(path, model: TextVAE, optimizer: torch.optim.Optimizer, tokenizer: CharTokenizer,
                        state: dict, extra: dict) -> Path:
    """Everything needed to continue training exactly: weights, Adam's moments, the random state and
    the loop's position (`state`), as tensors and JSON (no pickle)."""
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    osd = optimizer.state_dict()
    for idx, slots in osd["state"].items():
        for name, value in slots.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{idx}.{name}"] = value.detach().to("cpu").contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    metadata = {
        "format": RESUME_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(model.config.to_dict()),
        "tokenizer": json.dumps(tokenizer.to_dict(), ensure_ascii=False),
        "param_groups": json.dumps(osd["param_groups"]),
        "state": json.dumps(state),
        "extra": json.dumps(extra, ensure_ascii=False),
    }
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return Path(path)


def load_training_state(path) -> dict:
    """The parts of a resume file, checked: model, tokenizer, optimizer state dict, rng, state, extra."""
    p = Path(path)
    if p.is_dir():
        p = p / RESUME_NAME
    if not p.is_file():
        raise CheckpointError(f"no resumable state at {path} (training saves {RESUME_NAME} when it is "
                              "interrupted and at the end of every epoch)")
    try:
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > min(p.stat().st_size - 8, 100_000_000):
                raise ValueError
            meta = json.loads(f.read(n)).get("__metadata__") or {}
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        raise CheckpointError(f"{p} is not a textvae resume file") from None
    if meta.get("format") != RESUME_FORMAT or meta.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{p} is not a textvae resume file of version {FORMAT_VERSION}")
    try:
        config = ModelConfig.from_dict(json.loads(meta["model_config"]))
        tokenizer = CharTokenizer.from_dict(json.loads(meta["tokenizer"]))
        param_groups = json.loads(meta["param_groups"])
        state = json.loads(meta["state"])
        extra = json.loads(meta["extra"])
        tensors = load_file(p, device="cpu")
    except (KeyError, TypeError, ValueError, SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{p} is damaged: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}") from None
    with torch.device("meta"):
        skeleton = TextVAE(config)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if {k: tuple(v.shape) for k, v in weights.items()} != expected:
        raise CheckpointError(f"{p} does not match its configuration")
    model = TextVAE(config)
    model.load_state_dict(weights)
    optim_state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            optim_state.setdefault(int(idx), {})[name] = value
    return {"model": model, "tokenizer": tokenizer, "optimizer": {"state": optim_state, "param_groups": param_groups},
            "rng": tensors.get("rng.torch"), "rng_cuda": tensors.get("rng.cuda"), "state": state, "extra": extra}
