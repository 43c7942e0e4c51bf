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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from safetensors import SafetensorError

from ..data.tokenizer import CharTokenizer
from ..settings import DataConfig, ModelConfig

if TYPE_CHECKING:
    import torch

    from ..model.vae import TextVAE

FORMAT = "textvae-checkpoint"
RESUME_FORMAT = "textvae-resume"
RESUME_NAME = "resume.safetensors"
FORMAT_VERSION = 1
# Refuse to build a model larger than this many parameters from an untrusted file.
MAX_PARAMETERS = 2_000_000_000
MAX_HEADER = 100_000_000
CHECKPOINT_NAMES = ("best.safetensors", "last.safetensors")


class CheckpointError(Exception):
    """A file that is not a usable textvae checkpoint, worded for the user."""


@dataclass(frozen=True)
class RunInfo:
    """What a checkpoint records of the run that made it, beside the model and its vocabulary."""
    data: DataConfig = field(default_factory=DataConfig)   # where the items came from, how they were read
    labels: tuple[str, ...] = ()      # a conditional model's label names, in id order
    longest_item: int | None = None   # longest training item in characters: bounds decoding
    corpus_md5: str | None = None     # fingerprint of the training items: resuming refuses a changed corpus
    decoder_from: str | None = None   # the --lm run the decoder started from
    textvae_version: str = ""         # the version that trained the model
    words: dict | None = None         # the training text's words as a Bloom filter (metrics.WordSet.to_dict())
    items: dict | None = None         # and its items, whole: `generate` draws again what it finds there

    @property
    def decode_limit(self) -> int:
        """Longest item worth decoding: the longest training item, if known: nothing longer is sensible."""
        return int(self.longest_item) if self.longest_item else 128

    def to_dict(self) -> dict:
        return {**asdict(self), "data": self.data.to_dict(), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, d: dict) -> RunInfo:
        d = dict(d)
        return cls(data=DataConfig.from_dict(d.pop("data", None) or {}), labels=tuple(d.pop("labels", None) or ()),
                   **{k: d[k] for k in ("longest_item", "corpus_md5", "decoder_from", "textvae_version", "words",
                                                 "items")
                      if k in d})

    @classmethod
    def from_legacy(cls, extra: dict) -> RunInfo:
        """The flat `extra` dict that checkpoints before DataConfig carried."""
        data = {"corpus": extra.get("corpus"), "valid": extra.get("valid_corpus"), "unit": extra.get("unit") or "line",
                **{k: extra[k] for k in ("column", "label_column", "max_len", "encoding", "errors", "stream")
                   if extra.get(k) is not None}}
        return cls.from_dict({"data": data, "labels": extra.get("labels") or (),
                              **{k: extra.get(k) for k in ("longest_item", "corpus_md5", "decoder_from")},
                              "textvae_version": extra.get("textvae_version") or ""})


class Checkpoint(NamedTuple):
    model: TextVAE
    tokenizer: CharTokenizer
    run: RunInfo
    train_config: dict    # the TrainConfig that trained it, as saved (train.TrainConfig.from_dict reads it)
    progress: dict        # where training stood: epoch, step, validation figures


def save_file(tensors: dict, filename, metadata: dict | None = None) -> None:
    """safetensors' writer of torch tensors (imported when first needed: reading a checkpoint needs no torch)."""
    from safetensors.torch import save_file as write
    write(tensors, filename, metadata=metadata)


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


def _metadata(fmt: str, model: TextVAE, tokenizer: CharTokenizer, run: RunInfo | None, train_config: dict | None,
              progress: dict | None) -> dict[str, str]:
    return {
        "format": fmt,
        "format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(model.config.to_dict()),
        "tokenizer": json.dumps(tokenizer.to_dict(), ensure_ascii=False),
        "run": json.dumps((run or RunInfo()).to_dict(), ensure_ascii=False),
        "train_config": json.dumps(train_config or {}),
        "progress": json.dumps(progress or {}, ensure_ascii=False),
    }


def save(path, model: TextVAE, tokenizer: CharTokenizer, run: RunInfo | None = None,
         train_config: dict | None = None, progress: dict | None = None) -> Path:
    """Write `model` and `tokenizer`, with what is known of the run, to one file at `path`."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = _metadata(FORMAT, model, tokenizer, run, train_config, progress)
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


def _read_header(p: Path, fmt: str, what: str) -> dict:
    """The checked text metadata of a safetensors file of format `fmt`, read without its tensors."""
    try:
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{p} is not a {what} (file too short)")
            n = int.from_bytes(head, "little")
            if n <= 0 or n > min(p.stat().st_size - 8, MAX_HEADER):
                raise CheckpointError(f"{p} is not a {what} (not a safetensors file)")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{p} is not a {what} (unreadable header)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CheckpointError(f"{p} is not a {what}")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{p} has checkpoint format version {meta.get('format_version')!r}; "
                              f"this textvae reads version {FORMAT_VERSION}")
    return meta


def read_metadata(path) -> dict:
    """The metadata of a checkpoint file, checked, without reading its tensors."""
    p = resolve(path)
    return _read_header(p, FORMAT, "textvae checkpoint")


def _parse(p: Path, meta: dict) -> tuple[ModelConfig, CharTokenizer, RunInfo, dict, dict]:
    """Configuration, vocabulary and run record from checked metadata; old flat `extra` records too."""
    try:
        config = ModelConfig.from_dict(json.loads(meta["model_config"]))
        tokenizer = CharTokenizer.from_dict(json.loads(meta["tokenizer"]))
        if "run" in meta:
            run = RunInfo.from_dict(json.loads(meta["run"]))
            train_config = json.loads(meta.get("train_config", "{}"))
            progress = json.loads(meta.get("progress", "{}"))
        else:                                   # written before RunInfo: one flat dict
            extra = json.loads(meta.get("extra", "{}"))
            run = RunInfo.from_legacy(extra)
            train_config = extra.get("train_config") or {}
            progress = {k: extra[k] for k in ("epoch", "step", "valid", "interrupted") if k in extra}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{p} has a damaged configuration: {e}") from None
    if config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(f"{p} is inconsistent: model vocabulary {config.vocab_size}, "
                              f"tokenizer {tokenizer.vocab_size}")
    return config, tokenizer, run, train_config, progress


def _expected_shapes(p: Path, config: ModelConfig) -> dict[str, tuple]:
    """Parameter shapes the configuration implies, from a skeleton that allocates nothing; refuses absurd sizes."""
    import torch

    from ..model.vae import TextVAE

    class _NoNormalInit(torch.overrides.TorchFunctionMode):
        """A skeleton's normal_ initialisations skipped (in this thread only): there are no values to fill, and
        normal_ on a meta tensor first imports torch's reference kernels, 1.5 s of every command's start."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.Tensor.normal_ or func is torch.nn.init.normal_:
                return args[0] if args else (kwargs or {}).get("tensor", (kwargs or {}).get("self"))
            return func(*args, **(kwargs or {}))

    with torch.device("meta"), _NoNormalInit():
        skeleton = TextVAE(config)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if sum(torch.Size(s).numel() for s in expected.values()) > MAX_PARAMETERS:
        raise CheckpointError(f"{p} describes a model of over {MAX_PARAMETERS:,} parameters; refusing to build it")
    return expected


def _build(p: Path, config: ModelConfig, expected: dict[str, tuple], weights: dict[str, torch.Tensor]) -> TextVAE:
    """The model, once its weights have exactly the shapes its configuration implies."""
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got)) or sorted(k for k in got if got[k] != expected.get(k))
        raise CheckpointError(f"{p} does not match its configuration (first mismatch: {missing[:1]})")
    from ..model.vae import TextVAE
    model = TextVAE(config)
    model.load_state_dict(weights)
    return model


def _tensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    try:
        return load_file(p, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{p} is damaged or truncated ({str(e).splitlines()[0][:120]})") from None


def read_arrays(p: Path):
    """A checkpoint file's tensors as numpy arrays, read without torch; None where numpy has no such type."""
    from safetensors.numpy import load_file
    try:
        return load_file(p)
    except TypeError:                   # bfloat16 and the like: numpy has no such type
        return None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{p} is damaged or truncated ({str(e).splitlines()[0][:120]})") from None


def load(path, device: str | torch.device = "cpu") -> Checkpoint:
    """model, tokenizer, run, train_config, progress = load(path): all that generate and interpolate need."""
    p = resolve(path)
    config, tokenizer, run, train_config, progress = _parse(p, _read_header(p, FORMAT, "textvae checkpoint"))
    expected = _expected_shapes(p, config)
    model = _build(p, config, expected, _tensors(p))
    model.to(device).eval()
    return Checkpoint(model, tokenizer, run, train_config, progress)


# -- resumable training state ------------------------------------------------------

def save_training_state(path, model: TextVAE, optimizer: torch.optim.Optimizer, tokenizer: CharTokenizer,
                        state: dict, run: RunInfo, train_config: dict) -> Path:
    """Everything needed to continue training exactly: weights, Adam's moments, the random state and
    the loop's position (`state`), as tensors and JSON (no pickle)."""
    import torch
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    osd = optimizer.state_dict()
    for idx, slots in osd["state"].items():
        for name, value in slots.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{idx}.{name}"] = value.detach().to("cpu").contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    metadata = _metadata(RESUME_FORMAT, model, tokenizer, run, train_config, state)
    metadata["param_groups"] = json.dumps(osd["param_groups"])
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return Path(path)


def load_training_state(path) -> dict:
    """The parts of a resume file, checked: model, tokenizer, optimizer state dict, rng, state, run, train_config."""
    p = Path(path)
    if p.is_dir():
        p = p / RESUME_NAME
    if not p.is_file():
        raise CheckpointError(f"no resumable state at {path} (training saves {RESUME_NAME} when it is "
                              "interrupted and at the end of every epoch)")
    meta = _read_header(p, RESUME_FORMAT, "textvae resume file")
    config, tokenizer, run, train_config, state = _parse(p, meta)
    try:
        param_groups = json.loads(meta["param_groups"])
        if "run" not in meta:                   # written before RunInfo: the loop's position had its own key
            state = json.loads(meta["state"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{p} is damaged: no optimiser settings or position") from None
    expected = _expected_shapes(p, config)
    tensors = _tensors(p)
    model = _build(p, config, expected, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    optim_state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            optim_state.setdefault(int(idx), {})[name] = value
    return {"model": model, "tokenizer": tokenizer, "optimizer": {"state": optim_state, "param_groups": param_groups},
            "rng": tensors.get("rng.torch"), "rng_cuda": tensors.get("rng.cuda"), "state": state, "run": run,
            "train_config": train_config}
