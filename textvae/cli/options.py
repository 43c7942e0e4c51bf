"""The command line's options, declared once; their defaults and choices come from the configuration
dataclasses (`DataConfig`, `ModelConfig`, `TrainConfig`, `Decoding`, `BenchConfig`) and registries."""

from __future__ import annotations

import dataclasses
import math

import click

from ..settings import (
    CELL_NAMES,
    DEFAULT_LR,
    DEFAULT_WORD_DROPOUT,
    GPU_BATCH,
    LEGACY_BATCH,
    LEGACY_LR,
    LEGACY_WORD_DROPOUT,
    MAP_ITEMS,
    MAX_DECODE_LEN,
    MAX_MAP_ITEMS,
    MAX_PATH_STEPS,
    PIECE_TOP_P,
    SCHEDULES,
    SMALL_CORPUS,
    STRATEGIES,
    TINY_CORPUS,
    UNITS,
    WARM_FREE_BITS,
    WORD_TOP_P,
    BenchConfig,
    DataConfig,
    Decoding,
    ModelConfig,
    TrainConfig,
)
from ..training.schedule import DEFAULT_EPOCHS, DEFAULT_MINUTES, DEFAULT_PATIENCE, LR_SCHEDULES, MIN_STEPS

LARGEST = 1e6      # a number option's upper bound where it sets none: past it no setting means anything, and
                   # some overflow float32 arithmetic (--temperature 1e39 divides logits by inf)
SEED = click.IntRange(0, 2**63 - 1)    # what torch.manual_seed and numpy's generators all take


class Number(click.FloatRange):
    """A FloatRange that refuses nan, inf and -inf (NaN passes every comparison with a bound, so FloatRange lets it
    through), and numbers past `LARGEST` where the option sets no upper bound."""

    name = "number"

    def __init__(self, min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False):
        super().__init__(min, LARGEST if max is None else max, min_open, max_open)

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        lower = "" if self.min is None else f"{self.min:,.15g}{'<' if self.min_open else '<='}"
        return f"{lower}x{'<' if self.max_open else '<='}{self.max:,.15g}"


def _default(cls, name: str):
    """The default of a configuration dataclass's field: every default lives in its dataclass."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def options(*options):
    """Apply a list of click options to a command, in the order listed."""
    def apply(f):
        for option in reversed(options):
            f = option(f)
        return f
    return apply


def _m(name):
    return _default(ModelConfig, name)


def _t(name):
    return _default(TrainConfig, name)


# option name -> field of DataConfig, ModelConfig or TrainConfig
DATA_FIELDS = {"valid_path": "valid", "unit": "unit", "column": "column", "label_column": "label_column",
               "max_len": "max_len", "encoding": "encoding", "errors": "errors", "stream": "stream"}
MODEL_FIELDS = {"cell": "cell", "embed_dim": "embed_dim", "hidden_dim": "hidden_dim", "encoder_dim": "encoder_dim",
                "latent_dim": "latent_dim", "layers": "num_layers", "bidirectional": "bidirectional",
                "z_every_step": "z_every_step", "lm": "lm", "slots": "slots", "slot_span": "slot_span",
                "slot_unit": "slot_unit", "slot_feed": "slot_feed", "slot_prior": "slot_prior"}
TRAIN_FIELDS = {"epochs": "epochs", "steps": "max_steps", "minutes": "max_minutes", "patience": "patience",
                "batch_size": "batch_size", "lr": "lr", "clip": "clip", "kl_schedule": "kl_schedule",
                "kl_warmup": "kl_warmup", "beta": "beta", "free_bits": "free_bits", "word_dropout": "word_dropout",
                "label_dropout": "label_dropout", "seed": "seed", "device": "device", "amp": "amp",
                "lr_schedule": "lr_schedule", "lr_warmup": "lr_warmup", "lr_floor": "lr_floor",
                "tensorboard": "tensorboard"}

TRAIN_OPTIONS = [
    click.option("--resume", "resume_run", type=click.Path(), help="Continue an interrupted run (its directory) where it stopped."),
    click.option("--out", type=click.Path(file_okay=False), help="Run directory [default: runs/<corpus name>]."),
    click.option("--valid", "valid_path", help="Validation file [default: 5% of CORPUS, chosen by a hash of each item]."),
    click.option("--unit", type=click.Choice(UNITS), default=_default(DataConfig, "unit"), show_default=True,
                 help="An item is a whole line, or each whitespace-separated word."),
    click.option("--column", help="Text column of a CSV/TSV/JSONL/Parquet file or dataset [default: 'text' or the only column]."),
    click.option("--label", "label_column", help="Label column: train a conditional VAE (Sohn et al. 2015) on it."),
    click.option("--max-len", type=click.IntRange(1), default=_default(DataConfig, "max_len"), show_default=True,
                 help="Skip items longer than this many characters."),
    click.option("--encoding", default=_default(DataConfig, "encoding"), show_default=True, help="Text encoding of the corpus."),
    click.option("--errors", type=click.Choice(["strict", "replace", "ignore"]), default=_default(DataConfig, "errors"),
                 show_default=True, help="What to do with bytes that are not valid in --encoding, and with text that "
                 "is not Unicode (a lone surrogate, as a JSON \"\\ud800\" escape makes): refuse the file, "
                 "replace each with U+FFFD, or drop it."),
    click.option("--cell", type=click.Choice(list(CELL_NAMES)), default=_m("cell"), show_default=True, help="Recurrent unit."),
    click.option("--embed-dim", type=click.IntRange(1, 65536), default=_m("embed_dim"), show_default=True,
                 help="Character embedding size."),
    click.option("--hidden-dim", type=click.IntRange(1, 65536), default=_m("hidden_dim"), show_default=True,
                 help="Decoder RNN state size."),
    click.option("--encoder-dim", type=click.IntRange(1, 65536),
                 help="Encoder RNN state size (each direction) [default: half of --hidden-dim]."),
    click.option("--latent-dim", type=click.IntRange(1, 65536), default=_m("latent_dim"), show_default=True,
                 help="Size of the code z."),
    click.option("--layers", type=click.IntRange(1, 16), default=_m("num_layers"), show_default=True, help="Stacked RNN layers."),
    click.option("--slots", type=click.IntRange(0, 4096),
                 help="0: one code for the whole item (Bowman et al. 2016); N: a code of N slots, one per --slot-span "
                      "characters, read by attention [default: 0, or one per 8 characters for sentences]."),
    click.option("--slot-span", type=click.IntRange(1, 65536), help="Characters per slot [default: 8]."),
    click.option("--slot-unit", type=click.Choice(["char", "word"]),
                 help="Slots of --slot-span characters, or one per word (a new slot after each space), so that a "
                      "character decoded wrong does not shift the slots read after it [default: word for sentences]."),
    click.option("--slot-feed/--no-slot-feed", default=None,
                 help="Also feed each character's slot (and the next) into the decoder's input, not only by "
                      "attention at its output [default: on for sentences]."),
    click.option("--slot-prior", type=click.IntRange(0, 65536),
                 help="With slots that follow words: generate from a bigram model over this many clusters of the "
                      "training codes' word slots, fitted after training (the earlier prior of sentences), instead "
                      "of the word prior learned with the model; 0: from a Gaussian [default: the word prior]."),
    click.option("--bidirectional/--unidirectional", default=_m("bidirectional"), show_default=True, help="Encoder direction."),
    click.option("--z-every-step/--z-initial-only", default=_m("z_every_step"), show_default=True,
                 help="Feed z to the decoder at every step, or only through its initial state (plain Bowman)."),
    click.option("--lm", is_flag=True, help="Train a plain character language model (no latent code), as a baseline."),
    click.option("--decoder-from", "decoder_from", metavar="LM_RUN",
                 help="Start the VAE's decoder from a trained --lm run (its architecture and characters too), then "
                      "learn the code: the VAE comes closest to that model's likelihood. Changes the defaults of "
                      f"--kl-schedule to constant and --free-bits to {WARM_FREE_BITS}."),
    click.option("--epochs", type=click.IntRange(1),
                 help="The budget in passes over the training items [default: a budget that fits the corpus: "
                      f"{DEFAULT_EPOCHS} epochs, at least {MIN_STEPS:,} steps, at most "
                      f"{DEFAULT_MINUTES['cpu']:g} min on a CPU or {DEFAULT_MINUTES['cuda']:g} on a GPU]."),
    click.option("--steps", type=click.IntRange(1), help="The budget in optimiser steps instead."),
    click.option("--minutes", type=Number(0, min_open=True),
                 help="The budget in minutes: steps are planned from a measured step time; stops (and saves) "
                      "at this time at the latest."),
    click.option("--patience", type=click.IntRange(0),
                 help="Early stopping: stop after this many validations without a better smoothed validation "
                      "objective (-ELBO, free bits counted as in training), once the learning rate has decayed "
                      f"to half; 0 never stops early [default: {DEFAULT_PATIENCE}; 0 with --lr-schedule constant]."),
    click.option("--batch-size", type=click.IntRange(1),
                 help=f"Items per step [default on a CPU: 32 for corpora under {TINY_CORPUS:,} items, 64 under "
                      f"{SMALL_CORPUS:,}, 128 from there; "
                      f"{GPU_BATCH} on a GPU; {LEGACY_BATCH} with --lr-schedule constant]."),
    click.option("--lr", type=Number(0, min_open=True),
                 help=f"Peak Adam learning rate [default: {DEFAULT_LR:g}; {LEGACY_LR:g} with --lr-schedule constant]."),
    click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=_t("lr_schedule"), show_default=True,
                 help="Warm-up, then cosine or linear decay to --lr-floor at the budget's end; constant: no "
                      "decay, the earlier behaviour (10 epochs by default, KL warm-up not fitted to the budget)."),
    click.option("--lr-warmup", type=click.IntRange(0), help="Steps of learning-rate warm-up [default: 5% of the "
                 "budget, at most 500]."),
    click.option("--lr-floor", type=Number(0, 1), default=_t("lr_floor"), show_default=True,
                 help="The learning rate at the budget's end, as a share of --lr."),
    click.option("--kl-schedule", type=click.Choice(SCHEDULES), default=_t("kl_schedule"),
                 help=f"KL annealing (Bowman et al. 2016; cyclical: Fu et al. 2019) [default: {_t('kl_schedule')}; "
                      "constant with --decoder-from and for words and names]."),
    click.option("--kl-warmup", type=click.IntRange(1), default=_t("kl_warmup"), show_default=True,
                 help="Steps for beta to reach its maximum (steps per cycle when cyclical)."),
    click.option("--beta", type=Number(0), default=_t("beta"), show_default=True, help="Final weight of the KL term."),
    click.option("--free-bits", type=Number(0), default=_t("free_bits"),
                 help="Nats per latent dimension that cost nothing (Kingma et al. 2016); 0 turns it off "
                      f"[default: {_t('free_bits')}; {WARM_FREE_BITS} with --decoder-from]."),
    click.option("--word-dropout", type=Number(0, 1, max_open=True),
                 help="Chance of hiding each decoder input character (Bowman et al. 2016) [default: "
                      f"{DEFAULT_WORD_DROPOUT:g}; {LEGACY_WORD_DROPOUT:g} with --lr-schedule constant]."),
    click.option("--label-dropout", type=Number(0, 1, max_open=True), default=_t("label_dropout"),
                 show_default=True, help="With --label: chance of hiding an item's label, so the model also learns "
                 "items with no label and can be guided towards one when decoding (--guidance); 0 turns it off."),
    click.option("--clip", type=Number(0, min_open=True), default=_t("clip"), show_default=True,
                 help="Gradient-norm clipping."),
    click.option("--seed", type=SEED, default=_t("seed"), show_default=True, help="Seed for all randomness."),
    click.option("--device", default=_t("device"), show_default=True, help="auto (CUDA when present), cpu or cuda."),
    click.option("--amp/--no-amp", default=_t("amp"), show_default=True, help="Mixed precision on CUDA."),
    click.option("--tensorboard", is_flag=True, help="Also write TensorBoard events into RUN/tensorboard "
                 "(pip install 'textvae[tensorboard]'); metrics.jsonl stays the record."),
    click.option("--force", is_flag=True, help="Replace a run already in the output directory."),
    click.option("--stream", is_flag=True,
                 help="Read a large text file in a stream into a memory-mapped cache (automatic above 64 MB)."),
]


def _d(name):
    return _default(Decoding, name)


TRUNCATE_OPTION = click.option("--truncate", is_flag=True,
                               help="Cut texts longer than the model's training limit to it (with a warning) "
                                    "instead of refusing them.")
DECODING_OPTIONS = [
    click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
                 help="How to pick characters [default: sample for generate, beam (length-normalised) for "
                      "reconstruct, interpolate and analogy]."),
    click.option("--greedy", is_flag=True, help="Same as --strategy greedy."),
    click.option("--temperature", "-t", type=Number(0), default=_d("temperature"), show_default=True,
                 help="Sampling temperature; 0 is greedy."),
    click.option("--top-k", type=click.IntRange(0), default=_d("top_k"), show_default=True,
                 help="Sample among the k best characters (0: all)."),
    click.option("--top-p", type=Number(0, 1, min_open=True),
                 help="Nucleus sampling: the smallest set of characters (a sentence model's words) with this much "
                      f"probability [default: 1, all; a sentence model's words: {WORD_TOP_P}; a word or name model's "
                      f"characters: {PIECE_TOP_P}]."),
    click.option("--beam", type=click.IntRange(1, 256), default=_d("beam"), show_default=True,
                 help="Beam width (--strategy beam)."),
    click.option("--length-penalty", type=Number(0), default=_d("length_penalty"), show_default=True,
                 help="Beam ranking: log-probability / length^this (0: raw log-probability)."),
    click.option("--no-repeat-ngram", type=click.IntRange(0, 10_000), default=_d("no_repeat_ngram"), show_default=True,
                 help="Never emit a run of this many characters twice in one item: no loops (0: off)."),
    click.option("--repetition-penalty", type=Number(1.0), default=_d("repetition_penalty"), show_default=True,
                 help="Discourage characters already emitted (Keskar et al. 2019); 1: off."),
    click.option("--guidance", type=Number(0),
                 help="A conditional model trained with label dropout: how hard to steer towards the label "
                      "(classifier-free guidance; 0: none) [default: 1]."),
    click.option("--seed", type=SEED, help="Seed: the same seed prints the same items."),
    click.option("--max-len", type=click.IntRange(1, MAX_DECODE_LEN),
                 help="Longest item, in characters [default: from the training data]."),
    TRUNCATE_OPTION,
]
decoding_options = options(*DECODING_OPTIONS)


LABEL_OPTION = click.option("--label", help="A conditional model's label to decode (and encode) under.")
MODEL_OPTION = click.option("--model", "model_path",
                            help="Checkpoint file or run directory [default: the last one trained here].")




def _b(name):
    return _default(BenchConfig, name)


BENCH_OPTIONS = [
    click.option("--cell", type=click.Choice(list(CELL_NAMES)), default=_m("cell"), show_default=True),
    click.option("--hidden-dim", type=click.IntRange(1), default=_m("hidden_dim"), show_default=True),
    click.option("--encoder-dim", type=click.IntRange(1), help="Encoder width [default: half of --hidden-dim]."),
    click.option("--embed-dim", type=click.IntRange(1), default=_m("embed_dim"), show_default=True),
    click.option("--latent-dim", type=click.IntRange(1), default=_m("latent_dim"), show_default=True),
    click.option("--batch-size", type=click.IntRange(1), default=_b("batch_size"), show_default=True),
    click.option("--seq-len", type=click.IntRange(2), default=_b("seq_len"), show_default=True,
                 help="Characters per item, <eos> included."),
    click.option("--steps", type=click.IntRange(1, 10_000), default=_b("steps"), show_default=True,
                 help="Timed steps per repeat."),
    click.option("--repeats", type=click.IntRange(1, 100), default=_b("repeats"), show_default=True,
                 help="Timed repeats; figures are medians."),
    click.option("--generate-n", type=click.IntRange(1, 1_000_000), default=_b("generate_n"), show_default=True,
                 help="Items per generation run."),
    click.option("--no-one-at-a-time", is_flag=True, help="Skip the (slow) one-item-per-step loop."),
    click.option("--device", default=_b("device"), show_default=True),
    click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures to this JSON file."),
]


GENERATE_OPTIONS = [
    click.option("-n", "--num", type=click.IntRange(1), default=10, show_default=True,
                 help="How many items (printed a block at a time as they are made, so any number is fine)."),
    click.option("--near", help="Sample codes around this text's posterior instead of from the prior."),
    click.option("--radius", type=Number(0), default=1.0, show_default=True,
                 help="With --near: how many posterior standard deviations to wander."),
    click.option("--stats", is_flag=True, help="Also report (on stderr) how many samples are new, copied or repeated."),
    click.option("--copies", is_flag=True, help="Keep draws from the prior that are training items (by default "
                 "they are drawn again, up to 10 times; --near keeps them)."),
]


INTERPOLATE_OPTIONS = [
    click.option("--steps", type=click.IntRange(2, MAX_PATH_STEPS), default=7, show_default=True,
                 help="Points on the path, endpoints included."),
    click.option("--method", type=click.Choice(["lerp", "slerp"]), default="lerp", show_default=True,
                 help="Straight line, or great circle (White 2016), between the two codes."),
    click.option("--unique", is_flag=True, help="Drop a step whose text is the same as the step before."),
    click.option("--random", "random_ends", is_flag=True, help="Between two codes drawn from the prior instead of A and B."),
    click.option("--out", "out_path", type=click.Path(dir_okay=False),
                 help="Also draw the path: .html or .png, changed characters highlighted."),
    click.option("--label", help="A conditional model: the label kept along the path (the label of A)."),
    click.option("--label-b", help="A conditional model: B's label; the path then moves between the two labels too."),
]


EVALUATE_OPTIONS = [
    click.option("--baseline", help="Another model (say, one trained with --lm) to evaluate beside it on the same items."),
    click.option("--samples", "-k", type=click.IntRange(1, 10_000), default=100, show_default=True,
                 help="Importance samples per item for the IW-NLL bound (Burda et al. 2016)."),
    click.option("--column", help="Text column of a table file."),
    click.option("--unit", type=click.Choice(UNITS), help="Items are lines or words [default: as in training]."),
    click.option("--max-len", type=click.IntRange(1), help="Skip items longer than this [default: as in training]."),
    click.option("--limit", type=click.IntRange(1), help="Use only the first N items."),
    click.option("--recon-items", type=click.IntRange(0, 1_000_000), default=1000, show_default=True,
                 help="Items to reconstruct greedily from their posterior means."),
    click.option("--num-samples", type=click.IntRange(0, 1_000_000), default=1000, show_default=True,
                 help="Samples to draw to judge novelty and diversity."),
    click.option("--pairs", type=click.IntRange(0, 10_000), default=10, show_default=True,
                 help="Interpolation paths (7 steps) between pairs of FILE's first items, for endpoint fidelity, "
                      "smoothness and fluency."),
    click.option("--greedy-codes", type=click.IntRange(0, 1_000_000), default=200, show_default=True,
                 help="Prior codes decoded greedily, for the runaway rate."),
    click.option("--train-file", help="Training items, to tell copies from new samples [default: the run's corpus]."),
    click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures to this JSON file."),
    click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for the importance samples and samples."),
    click.option("--label", "label_column",
                 help="Label column of FILE [default: a conditional model's own]: judge whether samples carry labels."),
    click.option("--per-label", type=click.IntRange(1, 100_000), default=500, show_default=True,
                 help="Samples generated per label to judge a conditional model."),
    click.option("--guidance", type=Number(0),
                 help="Guidance of a conditional model's samples (see `generate --help`) [default: the model's]."),
    click.option("--device", default="auto", show_default=True,
                 help="Where to evaluate: auto (CUDA when present), cpu or cuda."),
]


PLOT_OPTIONS = [
    click.option("--data", "data_path", help="Held-out items to map [default: the run's validation items]."),
    click.option("--column", help="Text column of a table file."),
    click.option("--label", "label_column", help="Colour the map by this column of a table file (default: by length)."),
    click.option("--limit", type=click.IntRange(2, 100_000), default=3000, show_default=True,
                 help="Items on the map, at most."),
    click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Where to write the PNGs [default: RUN]."),
]


SERVE_OPTIONS = [
    click.option("--host", default="127.0.0.1", show_default=True,
                 help="Address to listen on; any but a loopback address lets other machines use the model."),
    click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
                 help="Port to listen on (0: any free one)."),
    click.option("--data", "data_path", help="Held-out items for the map [default: the run's validation items]."),
    click.option("--column", help="Text column of a table file given with --data."),
    click.option("--map-items", type=click.IntRange(2, MAX_MAP_ITEMS), default=MAP_ITEMS, show_default=True,
                 help="Items on the map, at most."),
]


RECONSTRUCT_OPTIONS = [
    click.option("--file", "file", help="Also every line of this file."),
    click.option("--label", help="A conditional model: the texts' own label."),
    click.option("--to-label", help="A conditional model: decode under this label instead (label transfer)."),
]


ENCODE_OPTIONS = [
    click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
                 help="codes.npy (an array, N x latent_dim) or codes.jsonl (one object per item)."),
    click.option("--logvar", is_flag=True, help="Also the posterior log-variances (.npy: a second file NAME.logvar.npy)."),
    click.option("--column", help="Text column of a table file."),
]
