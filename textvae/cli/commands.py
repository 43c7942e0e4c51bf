"""The `textvae` command line: the click group, its argument checks, and the decoding commands (generate,
reconstruct, encode, interpolate, analogy); `training` and `examine` add the others (see `cli/__init__.py`).

A user's mistake ends in one red line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .. import __version__
from ..data.corpus import DataError
from ..data.tokenizer import not_unicode
from ..io.checkpoint import CheckpointError
from ..io.output import OutputError, write_file
from ..settings import Decoding, NotUnicode, RunError, TextTooLong, TrainingError
from ..training import distributed
from . import options as opt

# Under torchrun only the first process talks.
err = Console(stderr=True, highlight=False, soft_wrap=True, quiet=distributed.launched_rank() != 0)


class UserError(Exception):
    """A mistake the user can fix; its message is all they need to see."""


def fail(message: str, code: int = 1):
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True)
    sys.exit(code)


class Group(click.Group):
    """Turns every expected failure into one line on stderr."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            _check_arguments(sys.argv[1:] if args is None else args)
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            ctx_hint = ""
            if isinstance(e, click.UsageError) and e.ctx is not None:
                ctx_hint = f" (see '{e.ctx.command_path} --help')"
            fail(_plain(e.format_message()) + ctx_hint, e.exit_code)
        except click.exceptions.Abort:
            fail("aborted", 130)
        except NotUnicode as e:         # a usage error, as click's own
            fail(_plain(str(e)), 2)
        except (UserError, DataError, CheckpointError, RunError, TrainingError, TextTooLong, OutputError) as e:
            fail(_plain(str(e)))
        except BrokenPipeError:           # the reader went away (`textvae generate | head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except MemoryError:
            fail("out of memory: try a smaller --batch-size or model")
        except Exception as e:  # a bug of ours: still one line, with a way to see the traceback
            if os.environ.get("TEXTVAE_DEBUG"):
                raise
            if isinstance(e, OSError) and isinstance(e.filename, str):      # a path the system refuses: too
                name = e.filename if len(e.filename) <= 60 else e.filename[:57] + "..."   # long, a loop of links
                fail(f"cannot use {_plain(repr(name))}: {(e.strerror or str(e)).lower()}")
            fail(f"unexpected {type(e).__name__}: {_plain(str(e))[:300]} "
                 "(please report it; TEXTVAE_DEBUG=1 shows the traceback)", 3)
        if isinstance(rv, int):
            sys.exit(rv)
        sys.exit(0)


def _check_arguments(args) -> None:
    """Every argument is Unicode text: bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape),
    which no output, file or checkpoint can hold, so they are refused here, before any is read as a text, a path
    or a name."""
    for i, arg in enumerate(args, 1):
        why = not_unicode(arg) if isinstance(arg, str) else None
        if why is not None:
            shown = repr(arg) if len(arg) <= 40 else repr(arg[:37]) + "..."
            raise NotUnicode(f"argument {i} ({shown}) is not Unicode text: {why} (bytes that are not UTF-8)")


def _plain(text: str) -> str:
    """Escape rich markup and fold to one line."""
    from rich.markup import escape
    return escape(" ".join(text.split()))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="textvae")
def cli():
    """textvae: learn, sample and explore short text with a character-level VAE.

    \b
    textvae train reviews.txt          train on one item per line
    textvae generate -n 50             50 new items from the last trained model
    textvae interpolate "a" "b"        decode the line between two items' codes
    """


# ---------------------------------------------------------------------------- helpers

def _model_path(model: str | None) -> Path:
    """--model, or the run that the last `textvae train` in this directory wrote."""
    from ..settings import last_run
    if model:
        return Path(model)
    path = last_run()
    if path is None:
        raise UserError("no model given and none trained here: run `textvae train FILE` first, or pass --model PATH")
    err.print(f"using model [bold]{_plain(str(path))}[/] (the last `textvae train` here; --model to choose)")
    return path


def _load(model: str | None, device: str = "cpu"):
    from ..api import load
    from ..training.trainer import pick_device
    return load(_model_path(model), device=str(pick_device(device)))


def _check_nonempty(texts) -> None:
    for t in texts:
        if not t.strip():
            raise UserError("empty text: give at least one character")


def _check_texts(m, texts, truncate: bool = False) -> None:
    _check_nonempty(texts)
    m.truncate = truncate
    long = sum(len(t) > m.max_len for t in texts)
    if long and truncate:
        err.print(f"[yellow]warning:[/] {long:,} text{'s' if long > 1 else ''} cut to the model's limit of "
                  f"{m.max_len:,} characters")
    unknown = m.unknown_chars(texts)
    if unknown:
        shown = " ".join(repr(c) for c in sorted(unknown)[:10])
        err.print(f"[yellow]warning:[/] characters the model never saw map to <unk>: {_plain(shown)}")


def _given(ctx, key: str) -> bool:
    """Whether the option `key` was typed on the command line (not left at its default)."""
    return ctx.get_parameter_source(key) == click.core.ParameterSource.COMMANDLINE


def _progress(*extra) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), *extra, console=err)


# ---------------------------------------------------------------------------- decoding options

def _decoding(opts: dict, default: str) -> Decoding:
    """The decoding options as one setting (they are removed from `opts`); --greedy is --strategy greedy."""
    strategy = "greedy" if opts.pop("greedy") else opts.pop("strategy") or default
    opts.pop("strategy", None)
    return Decoding(strategy=strategy, **{f.name: opts.pop(f.name) for f in dataclasses.fields(Decoding)
                                          if f.name != "strategy"})


def _label_check(m, *labels, guidance: float | None = None) -> None:
    """One clear line for a label the model does not know, a missing one, or guidance it cannot take."""
    if guidance and not m.guidable:
        raise UserError("--guidance needs a conditional model trained with --label and --label-dropout above 0")
    for label in labels:
        if label is None:
            continue
        if not m.conditional:
            raise UserError("--label needs a conditional model (trained with --label COLUMN)")
        if label not in m.labels:
            raise UserError(f"unknown label {label!r}: the model knows {', '.join(m.labels)}")
    if m.conditional and labels and labels[0] is None:
        raise UserError(f"this model is conditional: pass --label ({', '.join(m.labels)})")


def _prepared(model_path, opts: dict, default: str, texts=(), labels=()):
    """The model, its decoding setting and seed, after the checks every decoding command makes."""
    _check_nonempty(texts)
    seed = opts.pop("seed")
    truncate = opts.pop("truncate", False)
    dec = _decoding(opts, default)
    m = _load(model_path)
    _label_check(m, *labels, guidance=dec.guidance)
    _check_texts(m, texts, truncate)
    return m, dec, seed


def _echo(text: str) -> None:
    """A line (or lines) to stdout; a full disk or a closed output is one clear line, not a traceback."""
    try:
        click.echo(text)
    except BrokenPipeError:
        raise
    except OSError as e:
        raise UserError(f"cannot write the output: {e.strerror or e}") from None


# ---------------------------------------------------------------------------- generate

@cli.command()
@opt.MODEL_OPTION
@opt.options(*opt.GENERATE_OPTIONS)
@opt.decoding_options
@opt.LABEL_OPTION
def generate(model_path, num, near, radius, stats, copies, label, **opts):
    """Sample new items: codes from the prior (or near a text), decoded one per line; a draw from the prior that
    is an item of the training text is drawn again (--copies keeps it)."""
    if near is None and label is None and not stats:
        model_path = str(_model_path(model_path))
        if _generate_without_torch(model_path, num, dict(opts), not copies):
            return
    m, dec, seed = _prepared(model_path, opts, "sample", [near] if near is not None else [], [label])
    texts: list[str] = []                           # the first STATS_ITEMS, for --stats
    for block in m.iter_generate(num, dec, seed=seed, near=near, radius=radius, label=label, new=not copies):
        _echo("\n".join(block))
        if stats and len(texts) < STATS_ITEMS:
            texts.extend(block[:STATS_ITEMS - len(texts)])
    if stats:
        from ..data.prepare import training_items
        from ..evaluation.metrics import sample_report
        train_items = training_items(m.run.data)
        r = sample_report(texts, train_items or set())
        novelty = (f"{r['new']:.1%} new, {r['copied']:.1%} copies of training items; " if train_items is not None
                   else "training corpus not found, novelty unknown; ")
        err.print(f"{len(texts):,} samples{' (the first)' if num > len(texts) else ''}: {novelty}{r['duplicates']:.1%} duplicates; "
                  f"distinct-1 {r['distinct_1']:.3f}, distinct-2 {r['distinct_2']:.3f}; mean length {r['mean_length']:.1f}")


def _generate_without_torch(model_path: str, num: int, opts: dict, new: bool) -> bool:
    """`generate` from the prior by `sample.Sampler`: the same items as `Model.iter_generate`, without loading
    torch, so that the first lines come at once. False (nothing printed) where the torch model is needed: beam
    search, guidance, a conditional model, a checkpoint whose arrays numpy cannot read as they are."""
    from ..decoding.sample import Sampler
    seed = opts.pop("seed")
    opts.pop("truncate", None)
    dec = _decoding(opts, "sample")
    sampler = Sampler.open(model_path, dec)
    if sampler is None:
        return False
    blocks = sampler.iter_generate(num, dec, seed, new)
    try:
        first = next(blocks)
    except (ValueError, IndexError, KeyError):      # arrays unlike their configuration: the torch path says why
        return False
    _echo("\n".join(first))
    for block in blocks:
        _echo("\n".join(block))
    return True


# ---------------------------------------------------------------------------- reconstruct, encode

STATS_ITEMS = 100_000       # generate --stats judges at most this many samples (the first)


@cli.command()
@click.argument("texts", nargs=-1)
@opt.options(*opt.RECONSTRUCT_OPTIONS)
@opt.MODEL_OPTION
@opt.decoding_options
def reconstruct(texts, file, model_path, label, to_label, **opts):
    """Encode each text and decode its posterior mean: input, a tab, then its reconstruction.
    With --label and --to-label, the text is re-written under another label."""
    if not texts and not file:
        raise UserError("nothing to read: give texts, or --file FILE")
    from ..data.stream import read_chunks
    truncate = opts["truncate"]
    m, dec, seed = _prepared(model_path, opts, "beam", list(texts), [label, to_label])
    done, cut = 0, []
    for chunk in read_chunks(texts, file, m.max_len, truncate, cut):
        _check_nonempty(chunk)
        m.truncate = truncate
        out = m.reconstruct(chunk, dec, seed=seed, label=label, to_label=to_label)
        _echo("\n".join(f"{a}\t{b}" for a, b in zip(chunk, out)))
        done += len(chunk)
    if cut:
        err.print(f"[yellow]warning:[/] {len(cut):,} lines cut to the model's limit of {m.max_len:,} characters")
    if not done:
        raise UserError(f"nothing to read in {file}")


@cli.command()
@click.argument("file")
@opt.options(*opt.ENCODE_OPTIONS)
@opt.MODEL_OPTION
@opt.LABEL_OPTION
@opt.TRUNCATE_OPTION
def encode(file, out_path, logvar, column, model_path, label, truncate):
    """Posterior means of every item of FILE, in input order."""
    from ..api import write_codes
    from ..data.corpus import read_corpus
    out = Path(out_path)
    if out.suffix not in (".npy", ".jsonl"):
        raise UserError(f"--out must end in .npy or .jsonl, not {out.suffix or 'nothing'}")
    m = _load(model_path)
    _label_check(m, label)
    items = read_corpus(file, unit=m.run.data.unit, column=column).items
    _check_texts(m, items, truncate)
    mu, lv = m.encode(items, return_logvar=True, labels=label)
    fmt = out.suffix[1:]
    write_file(out, lambda f: write_codes(f, items, mu, lv if logvar else None, fmt))
    if logvar and fmt == "npy":
        write_file(out.with_suffix(".logvar.npy"), lambda f: write_codes(f, items, lv))
    err.print(f"wrote {len(items):,} codes of dimension {mu.shape[1]} to {_plain(str(out))}")


# ---------------------------------------------------------------------------- interpolate, analogy

@cli.command()
@click.argument("a", required=False)
@click.argument("b", required=False)
@opt.MODEL_OPTION
@opt.options(*opt.INTERPOLATE_OPTIONS)
@opt.decoding_options
def interpolate(a, b, model_path, steps, method, unique, random_ends, out_path, label, label_b, **opts):
    """Decode the points between the codes of A and B (Bowman et al. 2016, section 5), one line per step."""
    if not random_ends and (a is None or b is None):
        raise UserError("give two texts A and B, or --random")
    if out_path and Path(out_path).suffix.lower() not in (".html", ".png"):
        raise UserError("--out must end in .html or .png")
    m, dec, seed = _prepared(model_path, opts, "beam", [] if random_ends else [a, b], [label, label_b])
    ends = tuple(m.sample_prior(2, seed)) if random_ends else (a, b)
    texts = m.interpolate(*ends, steps=steps, method=method, decoding=dec, seed=seed, label=label, label_b=label_b)
    fractions = [i / (steps - 1) for i in range(steps)]
    if unique:
        keep = [i for i in range(steps) if i == 0 or texts[i] != texts[i - 1]]
        texts, fractions = [texts[i] for i in keep], [fractions[i] for i in keep]
    for f, text in zip(fractions, texts):
        _echo(f"{f:.2f}\t{text}")
    if not random_ends:
        from ..evaluation.metrics import char_accuracy
        err.print(f"endpoint fidelity: {char_accuracy(a, texts[0]):.0%} (A), {char_accuracy(b, texts[-1]):.0%} (B): "
                  "how much of each text its end of the path gives back")
    if out_path:
        _draw_path(Path(out_path), texts, fractions)


def _draw_path(path: Path, texts, fractions) -> None:
    from .render import interpolation_html, interpolation_png
    if path.suffix.lower() == ".html":
        write_file(path, lambda f: f.write(interpolation_html(texts, fractions).encode("utf-8")))
    else:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("a .png needs matplotlib: pip install 'textvae[plot]' (or use .html)") from None
        write_file(path, lambda f: interpolation_png(texts, fractions, f))
    err.print(f"wrote {_plain(str(path))}")


@cli.command()
@click.argument("a")
@click.argument("b")
@click.argument("c")
@opt.MODEL_OPTION
@opt.decoding_options
@opt.LABEL_OPTION
def analogy(a, b, c, model_path, label, **opts):
    """Latent arithmetic: decode z_B - z_A + z_C ("A is to B as C is to ?")."""
    m, dec, seed = _prepared(model_path, opts, "beam", [a, b, c], [label])
    click.echo(m.analogy(a, b, c, dec, seed=seed, label=label))


def main():
    cli(prog_name="textvae")
