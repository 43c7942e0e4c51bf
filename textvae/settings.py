"""The settings of every command, and the names the command line declares, in a module that imports no torch.

The configuration dataclasses (`DataConfig`, `ModelConfig`, `TrainConfig`, `Decoding`, `BenchConfig`), the choices and limits the options check, and the errors the command line turns into one line live here,
so that `textvae --help` and `textvae generate` start without loading torch (2-3 s of a 2-core machine's time):
the modules that use them import them from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

CELL_NAMES = ("gru", "lstm")             # the recurrent units (`model.CELLS`)
STRATEGIES = ("greedy", "sample", "beam")
SCHEDULES = ("constant", "linear", "logistic", "cyclical")

MAX_PATH_STEPS = 1000       # points on an interpolation path, at most
MAX_DECODE_LEN = 100_000    # characters of one decoded item, at most
MIN_TEMPERATURE = 1e-6  # sampling below this temperature is greedy: logits / T would overflow float32 (3.4e38),
                        # and at 1e-6 a character 1e-5 nats less likely than the best is 22,000 times rarer already
WORD_TOP_P = 0.95       # a word prior's samples: the nucleus (Holtzman et al. 2020) its words are drawn from
PIECE_TOP_P = 0.85      # and a character prior's (words, names): with copies of training items drawn again, the new
                        # ones come from the model's tail; this nucleus keeps them word-like (words_en: the judge's
                        # 1.31x held-out words at 0.95, 1.10-1.16x at 0.85 over two seeds; names_en 1.05x, 0.95x)
BLOCK = 256     # items generated together: each block has its own seed (`api.Model.iter_generate`)
SLOT_SUMMARY = 64       # size of the code summary fed to every decoder step when the code is made of slots
MAP_ITEMS = 2000        # held-out items on the explorer's map, by default
MAX_MAP_ITEMS = 20_000  # and at most: every point is drawn, and its text sent, to the page
LAST_RUN_FILE = ".textvae-last"     # in the working directory: the run that the last `textvae train` here wrote
WARM_FREE_BITS = 0.1    # --free-bits under --decoder-from: a little information in z costs the LM's likelihood least

DEVICES = ("auto", "cpu", "cuda")
LEGACY_BATCH = 128     # --lr-schedule constant keeps the earlier defaults: batches of 128,
LEGACY_LR = 2e-3       # a learning rate of 2e-3,
LEGACY_WORD_DROPOUT = 0.25   # and character dropout 0.25
DEFAULT_LR = 5e-3      # under a planned schedule: peak learning rate (measured against 2e-3: docs/RESULTS.md),
DEFAULT_WORD_DROPOUT = 0.0   # and no character dropout (free bits keep the code in use)
SMALL_CORPUS = 20_000          # items: below this a CPU run takes batches of 64, from it on 128,
TINY_CORPUS = 10_000           # and below this batches of 32 (names_en, 7,627 items: its LM 1.9645 -> 1.9234)
GPU_BATCH = 256


class Saved:
    """A mixin for the settings dataclasses saved as JSON in checkpoints and run.json: `to_dict()` for saving;
    `from_dict()` that keeps the known fields, so that a file written by a later version with more settings still
    reads."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


UNITS = ("line", "word")


@dataclass(frozen=True)
class DataConfig(Saved):
    """Where a run's items come from and how they are read; saved in every checkpoint."""
    corpus: str | None = None         # text/table file, or hf:NAME[:CONFIG]
    valid: str | None = None          # validation file; None: a hashed 5% of the corpus
    unit: str = "line"                # an item is a whole line, or each whitespace-separated word
    column: str | None = None         # text column of a table or dataset
    label_column: str | None = None   # label column: a conditional model
    max_len: int | None = 256         # items longer than this many characters are skipped
    encoding: str = "utf-8"           # text encoding of the files
    errors: str = "strict"            # strict | replace | ignore: bytes not valid in `encoding`
    stream: bool = False              # tokenise a plain text file in a stream into a memory-mapped cache


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int                 # characters + special tokens
    cell: str = "lstm"              # recurrent unit: "lstm" or "gru" (oneDNN makes the LSTM faster on CPUs)
    embed_dim: int = 64             # size of a character embedding
    hidden_dim: int = 256           # size of the decoder RNN's state
    encoder_dim: int | None = None  # size of the encoder RNN's state; None: half of hidden_dim
    latent_dim: int = 32            # size of z
    num_layers: int = 1             # stacked RNN layers, encoder and decoder alike
    bidirectional: bool = True      # encoder reads both ways
    z_every_step: bool = True       # also feed z to the decoder at every step, not only its first state
    rnn_dropout: float = 0.0        # dropout between stacked RNN layers
    lm: bool = False                # no latent code: a plain character language model (baseline)
    num_labels: int = 0             # > 0: a conditional VAE, q(z|x,y) and p(x|z,y) (Sohn et al. 2015)
    label_dim: int = 16             # size of a label embedding (conditional models)
    null_label: bool = False        # one more label id, num_labels, meaning "no label" (label dropout, guidance)
    slots: int = 0                  # 0: one code for the whole item (Bowman et al.); N > 0: z is N slots of
                                    # latent_dim / N each, slot k summarising characters [k*span, (k+1)*span),
                                    # and the decoder reads them by attention (long items: sentences)
    slot_span: int = 16             # characters per slot
    slot_feed: bool = False         # with slots: also feed the code's slot of each character (and the next one)
                                    # into the decoder RNN's input, not only by attention at its output
    slot_break: int = -1            # with slots: >= 0, slots follow words: a new slot after each of this token
                                    # (a space), so a character decoded wrong does not shift the slots read
                                    # after it; -1, slots of slot_span characters
    slot_prior: int = 0             # with slots that follow words: generate from a sequence model of the codes
                                    # of word slots (this many clusters, a bigram model over them, codes drawn from the
                                    # clusters' members and lengths from the corpus's), fitted to the training codes
    fitted_prior: bool = False      # generate from a Gaussian fitted to the training codes (ex-post density
                                    # estimation, Ghosh et al. 2020) rather than N(0, I): at a high rate the
                                    # codes fill only part of the prior's space
    global_dim: int = 0             # with slots: a global code of this size after the slots (what the item says as
                                    # a whole), under N(0, I); the word prior starts from it
    word_prior: int = 0             # with slots that follow words: > 0, the prior is learned with the model, a
                                    # language model over the slots (`prior.WordPrior`) whose vocabulary holds this
                                    # many words (the corpus's most frequent), the KL term's reference
    prior_hidden: int = 256         # size of the word prior's LSTM state

    def __post_init__(self):
        if self.encoder_dim is None and isinstance(self.hidden_dim, int):
            object.__setattr__(self, "encoder_dim", max(1, self.hidden_dim // 2))
        if self.cell not in CELL_NAMES:
            raise ValueError(f"unknown cell {self.cell!r}: use gru or lstm")
        limits = {"vocab_size": 2_000_000, "embed_dim": 65_536, "hidden_dim": 65_536, "encoder_dim": 65_536,
                  "latent_dim": 65_536, "num_layers": 64}
        for name, top in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= top:
                raise ValueError(f"model setting {name}={value!r} is outside 1..{top}")
        if not isinstance(self.num_labels, int) or not 0 <= self.num_labels <= 1_000_000:
            raise ValueError(f"model setting num_labels={self.num_labels!r} is outside 0..1000000")
        if not isinstance(self.label_dim, int) or not 1 <= self.label_dim <= 65_536:
            raise ValueError(f"model setting label_dim={self.label_dim!r} is outside 1..65536")
        if not isinstance(self.slots, int) or not 0 <= self.slots <= 4096 or not 1 <= self.slot_span <= 65_536:
            raise ValueError(f"model settings slots={self.slots!r}, slot_span={self.slot_span!r} are out of range")
        if not isinstance(self.slot_break, int) or not -1 <= self.slot_break < self.vocab_size:
            raise ValueError(f"model setting slot_break={self.slot_break!r} is not a token id (or -1)")
        if self.slot_prior and (self.slot_break < 0 or not self.slots or self.num_labels
                                or self.slot_dim < 3 or self.slot_prior > 65_536):
            raise ValueError("a slot prior needs slots that follow words, of at least 3 dimensions each, "
                             "in a model without labels")
        for name, top in (("global_dim", 65_536), ("word_prior", 10_000_000), ("prior_hidden", 65_536)):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= top:
                raise ValueError(f"model setting {name}={value!r} is outside 0..{top}")
        if self.global_dim and (not self.slots or self.global_dim >= self.latent_dim):
            raise ValueError("a global code goes beside a code of slots, within latent_dim")
        if self.word_prior and ((self.slot_break < 0 and self.slot_span != 1) or self.num_labels
                                or not self.global_dim or self.slot_prior or self.fitted_prior or not self.prior_hidden):
            raise ValueError("a word prior needs slots that follow words (or characters) and a global code, in a "
                             "model without labels or a fitted prior")
        if self.slots and (self.lm or (self.latent_dim - self.global_dim) % self.slots):
            raise ValueError(f"a code of {self.slots} slots needs a VAE whose latent_dim ({self.latent_dim}, "
                             f"less the global code's {self.global_dim}) they divide")

    @property
    def slot_dim(self) -> int:
        """Dimensions of one slot (a code of slots), else of the whole code."""
        return (self.latent_dim - self.global_dim) // self.slots if self.slots else self.latent_dim

    @property
    def code_width(self) -> int:
        """Width of the decoder's code: z (none in a language model), and the label's embedding."""
        return (0 if self.lm else self.latent_dim) + (self.label_dim if self.num_labels else 0)

    @property
    def every_step_width(self) -> int:
        """Width of the code's part of the decoder's input at every step (the code, or its summary): 0 without."""
        if not self.z_every_step or (self.lm and not self.num_labels):
            return 0
        return SLOT_SUMMARY if self.slots else self.code_width

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model settings: {', '.join(sorted(unknown))}")
        if "encoder_dim" not in d:           # saved before the encoder had its own size: it had the decoder's
            d = {**d, "encoder_dim": d.get("hidden_dim", 256)}
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig(Saved):
    epochs: int | None = None       # the budget in passes over the training items; none given: one that fits
    max_steps: int | None = None    # the budget in optimiser steps (overrides epochs)
    max_minutes: float | None = None  # the budget in wall-clock minutes (converted to steps); also a hard stop
    batch_size: int | None = None   # items per step; None: by corpus size and device (`default_batch_size`)
    lr: float | None = None         # peak Adam learning rate; None: DEFAULT_LR (LEGACY_LR under constant)
    lr_schedule: str = "cosine"     # cosine | linear: warm-up, then decay to the floor at the budget's end;
                                    # constant: the earlier behaviour (10 epochs, no decay)
    lr_warmup: int | None = None    # steps of learning-rate warm-up; None: 5% of the budget, at most 500
    lr_floor: float = 0.05          # the learning rate at the budget's end, as a share of lr
    clip: float = 1.0               # gradient-norm clipping
    kl_schedule: str = "linear"     # constant | linear | logistic | cyclical
    kl_warmup: int = 2000           # steps of KL annealing (per cycle for cyclical)
    beta: float = 1.0               # the KL weight the schedule reaches
    free_bits: float = 0.25         # nats per latent dimension below which KL is not penalised
    word_dropout: float | None = None  # probability of replacing a decoder input character by <unk>;
                                    # None: 0 (LEGACY_WORD_DROPOUT under constant)
    label_dropout: float = 0.2      # conditional models with a "no label" id: probability of hiding an item's label
    seed: int = 0                   # all randomness: initialisation, batches, dropout, z samples
    device: str = "auto"            # auto | cpu | cuda
    amp: bool = True                # bf16/fp16 autocast on CUDA
    recon_items: int = 1000         # validation items greedily reconstructed each epoch
    patience: int | None = None     # stop after this many validations without a better (smoothed) objective; 0 never,
                                    # None: schedule.DEFAULT_PATIENCE under a planned budget, never under the earlier one
    tensorboard: bool = False       # also write TensorBoard events into RUN/tensorboard
    log_every: int = 20             # steps between per-step lines in metrics.jsonl
    max_bad_steps: int = 20         # stop after this many non-finite losses in a row
    prior_dropout: float = 0.0      # a word prior: the share of earlier words hidden from it in training


@dataclass(frozen=True)
class BenchConfig:
    cell: str = ModelConfig.cell
    embed_dim: int = ModelConfig.embed_dim
    hidden_dim: int = ModelConfig.hidden_dim
    encoder_dim: int | None = None     # None: the model's default, half of hidden_dim
    latent_dim: int = ModelConfig.latent_dim
    batch_size: int = 64
    seq_len: int = 40           # characters per item, <eos> included
    steps: int = 20             # timed steps per repeat
    repeats: int = 5
    generate_n: int = 10_000
    device: str = "auto"
    one_at_a_time: bool = True


@dataclass(frozen=True)
class Decoding:
    """How codes become text. One setting flows from the command line through the API to the decoders.

    Greedy decoding is `strategy="greedy"`; sampling at temperature 0 is the same thing and is
    turned into it here, so there is one code path for it."""
    strategy: str = "greedy"          # greedy | sample | beam
    temperature: float = 1.0          # sampling: below 1 sharper, above 1 flatter; 0 (below MIN_TEMPERATURE) is
                                      # greedy
    top_k: int = 0                    # sampling among the k best characters (0: all)
    top_p: float | None = None        # nucleus sampling: the smallest set with this much probability; None: the
                                      # model's default (all characters; a word prior's words: WORD_TOP_P;
                                      # a character prior's: PIECE_TOP_P)
    beam: int = 5                     # beam width
    length_penalty: float = 1.0       # beam ranking: log-probability / length^this (0: raw log-probability)
    repetition_penalty: float = 1.0   # CTRL's penalty on characters already emitted (1: off)
    no_repeat_ngram: int = 20         # never emit a run of this many characters twice in an item (0: off); 20
                                      # stops loops and blocks under 1% of real sentences' own repeats
    max_len: int | None = None        # longest item in characters; None: from the model's training data
    guidance: float | None = None     # conditional models: classifier-free guidance weight; None: the model's

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}: use one of {', '.join(STRATEGIES)}")
        numbers = {"temperature": self.temperature, "top_p": self.top_p, "length_penalty": self.length_penalty,
                   "repetition_penalty": self.repetition_penalty, "guidance": self.guidance}
        for name, x in numbers.items():         # NaN passes every comparison below
            if x is not None and not math.isfinite(x):
                raise ValueError(f"decoding needs a finite {name}, not {x}")
        if (self.temperature < 0 or (self.top_p is not None and not 0 < self.top_p <= 1) or self.top_k < 0
                or self.beam < 1
                or self.no_repeat_ngram < 0):
            raise ValueError("decoding needs temperature >= 0, 0 < top_p <= 1, top_k >= 0, beam >= 1 and "
                             "no_repeat_ngram >= 0")
        if self.strategy == "sample" and self.temperature < MIN_TEMPERATURE:
            object.__setattr__(self, "strategy", "greedy")

    @classmethod
    def given(cls, decoding: Decoding | None, default_strategy: str = "greedy", **options) -> Decoding:
        """`decoding` (or the default strategy's setting) with the keyword `options` applied."""
        return (decoding or cls(strategy=default_strategy)).but(**options)

    def but(self, **changes) -> Decoding:
        """This setting with some fields changed (None values leave a field as it is)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


class TextTooLong(ValueError):
    """A text longer than the model's training length limit."""


class NotUnicode(ValueError):
    """A text holding a lone surrogate (U+D800-U+DFFF): half of a UTF-16 pair, no character. Python makes one of
    bytes that are not UTF-8 (argv, through surrogateescape) or of a JSON "\\ud800" escape; no UTF-8 output, file
    or response can hold it."""


class TrainingError(Exception):
    """Training cannot go on (for example, the loss kept being NaN)."""


class RunError(Exception):
    """A run cannot be started or resumed as asked; worded for the user."""


def last_run() -> Path | None:
    """The run the last `textvae train` in this directory wrote, if it is still there."""
    marker = Path(LAST_RUN_FILE)
    if marker.is_file():
        path = Path(marker.read_text(encoding="utf-8", errors="surrogateescape").strip())
        if path.exists():
            return path
    return None
