"""A run directory: start one from settings, or pick up one that was interrupted.

`textvae train` is `start(...)` or `resume(...)`, then iterating `Run.events()`; this module does the
preparation (data, vocabulary, model, the output directory) and knows nothing of the terminal.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..data.corpus import resolve_corpus
from ..data.prepare import PreparedData, prepare
from ..data.tokenizer import UNK_ID
from ..data.words import WordSet
from ..io import checkpoint
from ..io.checkpoint import RunInfo
from ..model.prior import vocabulary
from ..model.vae import TextVAE
from ..settings import LAST_RUN_FILE, WARM_FREE_BITS, DataConfig, ModelConfig, RunError, TrainConfig, last_run  # noqa: F401 (their home before settings)
from . import distributed
from .trainer import pick_device, train

RUN_FILES = ("best.safetensors", "last.safetensors", "resume.safetensors", "metrics.jsonl", "run.json")
# Items at least this long on average (in characters) are read as sentences, and get settings of their own
# unless the user chose them: a code of slots of SLOT_DIMS dimensions, one per word (SENTENCE_UNIT) or per
# SENTENCE_SPAN characters, each fed into the decoder's input at its characters (SENTENCE_FEED); free bits of a
# nat per dimension (a code as large as the item needs), and more, smaller steps.
SENTENCE_CHARS = 40
SENTENCE_SPAN = 8
SENTENCE_UNIT = "word"
SENTENCE_FEED = True
SENTENCE_PRIOR = 512    # clusters of the slot prior that generates codes of word slots (unlabelled corpora)
GLOBAL_DIMS = 32        # the global code beside the word slots, from which the word prior starts
GLOBAL_FREE_BITS = 0.5     # nats a dimension of the global code holds for free: 16 in all, a sentence's gist
PIECE_FREE_BITS = 0.0   # short items: the global code holds what pays for itself (an item is a dozen nats),
PIECE_KL = "constant"   # and the KL weighs 1 from the first step: annealing let the global code hold the item
                        # while the prior learnt to lean on it (words_en, 6 epochs: IW-NLL 1.7555 -> 1.6918)
VOCAB_ITEMS = 200_000   # a streamed corpus: the word prior's vocabulary is read from its first items
SLOT_DIMS = 16
SENTENCE_ENCODER = 64   # units each way: the encoder only fills slots of a word (or 8 characters); a narrower one buys steps
SENTENCE_TRAIN = {"free_bits": 1.0, "batch_size": 32, "lr": 5e-3, "word_dropout": 0.0, "recon_items": 200}


PIECE_DIMS = 8          # short items (words, names): a slot of this size per character,
PIECE_GLOBAL = 4        # a global code of this size beside them (16: words_en IW-NLL 1.7835, not 1.7545),
PIECE_ENCODER = 32      # and an encoder of this many units each way (it reads one character at a time);
PIECE_DECODER = 64      # a decoder of this many units: it spells each character from its slot, the prior is the
                        # language model (words_en, 6 epochs: test IW-NLL 1.7851 against 1.7836 with 256 units, a
                        # third less time a step; names_en 1.9865 against 1.9712)


def piece_settings(mean_length: float, longest: int) -> tuple[dict, dict, str] | None:
    """(model settings, training settings, why) for a corpus of short items (words, names), or None for sentences:
    a code of one slot per character and a global code, under a prior learned with the model, a language model
    over the characters' slots (`prior.WordPrior`, its pieces characters): the code holds the whole item, and
    costs what that language model charges for it."""
    if mean_length >= SENTENCE_CHARS:
        return None
    slots = max(1, longest)
    model = {"slots": slots, "slot_span": 1, "slot_unit": "char", "slot_feed": True, "encoder_dim": PIECE_ENCODER,
             "hidden_dim": PIECE_DECODER, "latent_dim": slots * PIECE_DIMS + PIECE_GLOBAL, "global_dim": PIECE_GLOBAL,
             "word_prior": -1}
    why = (f"items of {mean_length:.0f} characters on average: a code of {slots} slots of {PIECE_DIMS} dimensions, one "
           f"per character, and a global code of {PIECE_GLOBAL}, under a prior learned with the model (a language "
           f"model over the characters' slots, from the global code), a decoder of {PIECE_DECODER} units, free bits "
           f"{PIECE_FREE_BITS:g} (of the global code), the KL's full weight from the first step")
    return model, {"free_bits": PIECE_FREE_BITS, "kl_schedule": PIECE_KL}, why


def _pieces(options: dict) -> str | None:
    """What a word prior's pieces are under these model options: "word", "char" (slots of one character), or None
    (no slots, or slots of several characters: no word prior)."""
    if not options.get("slots"):
        return None
    if options.get("slot_unit") == "word":
        return "word"
    return "char" if options.get("slot_unit") == "char" and options.get("slot_span") == 1 else None


def sentence_settings(mean_length: float, longest: int, most_words: int = 1,
                      unit: str | None = None, feed: bool | None = None) -> tuple[dict, dict, str] | None:
    """(model settings, training settings, why) for a corpus of sentences, or None for shorter items. `unit` and
    `feed` are the user's --slot-unit and --slot-feed, when given."""
    if mean_length < SENTENCE_CHARS:
        return None
    unit = unit or SENTENCE_UNIT
    feed = SENTENCE_FEED if feed is None else feed
    slots = max(1, most_words if unit == "word" else -(-longest // SENTENCE_SPAN))
    words = unit == "word"
    model = {"slots": slots, "slot_span": SENTENCE_SPAN, "encoder_dim": SENTENCE_ENCODER, "slot_unit": unit,
             "slot_feed": feed}
    if words:                   # a prior learned with the model: a language model over the word slots
        model.update(latent_dim=slots * SLOT_DIMS + GLOBAL_DIMS, global_dim=GLOBAL_DIMS, word_prior=-1)
    else:
        model.update(latent_dim=slots * SLOT_DIMS, fitted_prior=True)
    each = "word" if unit == "word" else f"{SENTENCE_SPAN} characters"
    drawn = ("a language model over the word slots, learned with the model, and a global code of "
             f"{GLOBAL_DIMS} dimensions" if words else "a Gaussian fitted to the training codes")
    why = (f"items of {mean_length:.0f} characters on average read as sentences: a code of {slots} slots of "
           f"{SLOT_DIMS} dimensions, one per {each}{', fed to the decoder at their characters' if feed else ''}, "
           f"an encoder of {SENTENCE_ENCODER} units each "
           f"way, samples' codes drawn from {drawn}, free bits "
           f"{GLOBAL_FREE_BITS if words else SENTENCE_TRAIN['free_bits']:g}{' (of the global code)' if words else ''}, "
           f"batches of {SENTENCE_TRAIN['batch_size']}, "
           f"learning rate {SENTENCE_TRAIN['lr']:g}, character dropout {SENTENCE_TRAIN['word_dropout']:g}")
    train = dict(SENTENCE_TRAIN, free_bits=GLOBAL_FREE_BITS) if words else dict(SENTENCE_TRAIN)
    return model, train, why


def _most_words(data: PreparedData) -> int:
    """The most words (spaces + 1) of a training item."""
    space = data.tokenizer.stoi.get(" ")
    items = data.train
    if space is None or len(items) == 0:
        return 1
    spaces = np.add.reduceat((np.asarray(items.flat) == space).astype(np.int64), items.offsets[:-1])
    spaces[items.lengths == 0] = 0
    return int(spaces.max()) + 1


@dataclass
class Run:
    model: TextVAE
    data: PreparedData
    cfg: TrainConfig
    info: RunInfo
    out_dir: Path
    device: torch.device
    resume: dict | None = None
    chose: str | None = None          # settings chosen from the corpus, in words

    def events(self, stop: threading.Event | None = None) -> Iterator[dict]:
        return train(self.model, self.data.tokenizer, self.data.train, self.data.valid, self.cfg, self.out_dir,
                     self.info, stop=stop, resume=self.resume)

    def unknown_characters(self) -> int:
        """Training characters that the vocabulary (a language model's, under --decoder-from) lacks."""
        return int((np.asarray(self.data.train.flat) == UNK_ID).sum())

    def label_counts(self) -> dict[str, int]:
        ids = self.data.train.label_ids
        return {y: int((ids == i).sum()) for i, y in enumerate(self.data.labels or [])}


def decoder_source(path: str) -> TextVAE:
    """The language model that --decoder-from names (with its vocabulary as `.tokenizer`)."""
    ck = checkpoint.load(path)
    c = ck.model.config
    if not c.lm or c.num_labels:
        raise RunError(f"--decoder-from {path} is not a plain language model: train one with `textvae train CORPUS --lm`")
    ck.model.tokenizer = ck.tokenizer
    return ck.model


def decoder_settings(lm, given: dict) -> dict:
    """The train options that --decoder-from decides, checked against those typed (`given`, by option name):
    the language model's architecture, and the defaults of --kl-schedule and --free-bits."""
    settings = {"cell": lm.cell, "embed_dim": lm.embed_dim, "hidden_dim": lm.hidden_dim, "layers": lm.num_layers}
    for key, value in settings.items():
        if key in given and given[key] != value:
            raise RunError(f"--{key.replace('_', '-')} {given[key]} differs from the language model's "
                           f"{value}: leave it out, the decoder takes the language model's")
    settings["kl_schedule"] = given.get("kl_schedule", "constant")
    settings["free_bits"] = given.get("free_bits", WARM_FREE_BITS)
    return settings


@contextmanager
def stop_on_signals(on_stop=None):
    """An event that the first Ctrl-C (or SIGTERM) sets, so that training stops after the current step and
    saves; `on_stop()` is called then. A second Ctrl-C aborts (KeyboardInterrupt)."""
    stop = threading.Event()
    old = {}

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        if on_stop is not None:
            on_stop()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write to {out_dir}: {e.strerror}") from None


def _corpus_settings(data: PreparedData, model_options: dict, cfg: TrainConfig, chosen, labels: list,
                     lm: TextVAE | None) -> tuple[dict, TrainConfig, str | None]:
    """The model options and training settings for this corpus, and why (None: nothing chosen): a corpus of
    sentences gets `sentence_settings`, one of short items `piece_settings`, for every setting not named in
    `chosen`; then the priors each kind of code can have (a slot prior, a word prior) are settled."""
    chose = None
    settings = sentence_settings(data.mean_length, data.longest_item, _most_words(data),
                                 model_options.get("slot_unit"), model_options.get("slot_feed"))
    if settings is None and not labels and not chosen & {"slots", "slot_unit", "slot_span"}:
        settings = piece_settings(data.mean_length, data.longest_item)
    if settings is not None and lm is None and not model_options.get("lm"):
        model_set, train_set, chose = settings
        if "latent_dim" in chosen and model_options["latent_dim"] % model_set["slots"]:
            model_set = {}                  # a code size the slots do not divide: one code, as asked
        model_options = {**model_options, **{k: v for k, v in model_set.items() if k not in chosen}}
        cfg = dataclasses.replace(cfg, **{k: v for k, v in train_set.items() if k not in chosen})
    if "slot_prior" not in chosen and (labels or model_options.get("slot_unit") != "word"
                                       or not model_options.get("slots")):
        model_options.pop("slot_prior", None)       # a slot prior is for unlabelled codes of word slots
    if model_options.get("slot_prior"):             # the fitted slot prior, asked for: no word prior
        model_options["fitted_prior"] = True
    if ((labels or _pieces(model_options) is None or model_options.get("slot_prior"))
            and model_options.pop("word_prior", 0)):    # a word prior is for unlabelled codes of word slots too
        model_options["latent_dim"] -= model_options.pop("global_dim", 0)
        if settings is not None and "free_bits" not in chosen:     # a nat a dimension of the slots, as before
            cfg = dataclasses.replace(cfg, free_bits=SENTENCE_TRAIN["free_bits"])
    return model_options, cfg, chose


def start(data_cfg: DataConfig, model_options: dict, cfg: TrainConfig, out: str | None = None, force: bool = False,
          lm: TextVAE | None = None, decoder_from: str | None = None, progress=None,
          chosen: set[str] | frozenset = frozenset()) -> Run:
    """A new run: read the corpus, build the model (its decoder from the language model `lm`, loaded from
    `decoder_from` by `decoder_source`, if given), and make the output directory ready (`force` replaces a
    run already there). A corpus of sentences gets `sentence_settings` for every model or training setting
    not named in `chosen` (the ones the user set)."""
    if data_cfg.corpus is None:
        raise RunError("give a CORPUS to train on (or --resume RUN)")
    source, folder_valid = resolve_corpus(data_cfg.corpus)
    data_cfg = dataclasses.replace(data_cfg, corpus=source, valid=data_cfg.valid or folder_valid)
    data = prepare(data_cfg, tokenizer=lm.tokenizer if lm is not None else None, progress=progress)
    out_dir = Path(out) if out else Path("runs") / data.name
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"--out {out_dir} is a file, not a directory")
    holds_run = out_dir.is_dir() and any((out_dir / f).exists() for f in RUN_FILES)
    if holds_run and not force:
        raise RunError(f"{out_dir} already holds a run: pass --force to replace it, or --out DIR")
    distributed.barrier()                   # every process has looked before the first one writes
    device = pick_device(cfg.device)
    labels = data.labels or []
    model_options, cfg, chose = _corpus_settings(data, model_options, cfg, chosen, labels, lm)
    if model_options.pop("slot_unit", None) == "word" and model_options.get("slots"):
        space = data.tokenizer.stoi.get(" ")
        if space is None:
            raise RunError("--slot-unit word starts a slot after each space, and the corpus has no spaces")
        model_options["slot_break"] = space
    hashes = None
    if model_options.get("word_prior", 0):
        texts = data.texts if data.texts is not None else [
            data.tokenizer.decode(row) for row in data.train.batch(np.arange(min(len(data.train), VOCAB_ITEMS)))[0].tolist()]
        hashes, spellings, _ = vocabulary(texts, data.tokenizer, model_options.get("slot_break", -1))
        model_options["word_prior"] = max(1, len(hashes))
    try:
        model_cfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, num_labels=len(labels),
                                null_label=bool(labels) and cfg.label_dropout > 0, **model_options)
    except ValueError as e:
        raise RunError(str(e)) from None
    torch.manual_seed(cfg.seed)
    model = TextVAE(model_cfg)
    if hashes is not None:
        model.word_prior.hashes[:len(hashes)] = hashes
        model.word_prior.spellings[:len(hashes)] = spellings
    if lm is not None:
        model.start_decoder_from(lm)
    words = items = None
    if data.texts is not None:
        words, items = WordSet.of(data.texts).to_dict(), WordSet.of(data.texts, whole=True).to_dict()
    info = RunInfo(data=data_cfg, labels=tuple(labels), longest_item=data.longest_item, corpus_md5=data.fingerprint,
                   decoder_from=decoder_from, textvae_version=__version__, words=words, items=items)
    if distributed.is_main():
        if holds_run:
            for f in RUN_FILES:
                (out_dir / f).unlink(missing_ok=True)
        _check_writable(out_dir)
    return Run(model, data, cfg, info, out_dir, device, chose=chose)


def resume(run_dir: str, overrides: dict, progress=None) -> Run:
    """The interrupted run in `run_dir`, from its resume.safetensors; `overrides` may change its budget
    (epochs, max_steps, max_minutes)."""
    saved = checkpoint.load_training_state(run_dir)
    info: RunInfo = saved["run"]
    saved_cfg = dict(saved["train_config"])
    saved_cfg.setdefault("lr_schedule", "constant")     # a run from before planned schedules keeps its own
    cfg = TrainConfig.from_dict({**saved_cfg, **overrides})
    data = prepare(info.data, tokenizer=saved["tokenizer"], labels=list(info.labels) or None, progress=progress)
    if info.corpus_md5 and data.fingerprint != info.corpus_md5:
        raise RunError(f"the corpus {info.data.corpus} changed since this run started: cannot resume it exactly")
    _check_writable(Path(run_dir))
    return Run(saved["model"], data, cfg, info, Path(run_dir), pick_device(cfg.device), resume=saved)


def remember(out_dir: Path) -> None:
    """Note `out_dir` as the run that commands here use when no --model is given."""
    if distributed.is_main():
        # a path is bytes: one that is not UTF-8 (its surrogates) is written back as the bytes it was
        Path(LAST_RUN_FILE).write_text(str(out_dir.resolve()) + "\n", encoding="utf-8", errors="surrogateescape")
