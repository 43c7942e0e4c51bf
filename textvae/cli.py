"""The `textvae` command line: click declarations, argument checks and rich rendering; the only module that prints.

A user's mistake ends in one red line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__, distributed
from . import options as opt
from .checkpoint import CheckpointError
from .data import DataConfig, DataError
from .output import OutputError, write_file
from .settings import Decoding, NotUnicode, RunError, TextTooLong, TrainConfig, TrainingError
from .tokenizer import not_unicode

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
    from .settings import last_run
    if model:
        return Path(model)
    path = last_run()
    if path is None:
        raise UserError("no model given and none trained here: run `textvae train FILE` first, or pass --model PATH")
    err.print(f"using model [bold]{_plain(str(path))}[/] (the last `textvae train` here; --model to choose)")
    return path


def _load(model: str | None, device: str = "cpu"):
    from .api import load
    from .train import pick_device
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


# ---------------------------------------------------------------------------- train

@cli.command()
@click.argument("corpus", required=False)
@opt.options(*opt.TRAIN_OPTIONS)
@click.pass_context
def train(ctx, corpus, resume_run, out, decoder_from, force, **opts):
    """Train a VAE on CORPUS: a UTF-8 text file (one item per line), a CSV/TSV/JSONL/Parquet file with
    --column, a folder holding train.txt (and valid.txt), or hf:NAME[:CONFIG] for a Hugging Face dataset.
    Ctrl-C saves a resumable state; `textvae train --resume RUN` continues it."""
    from . import runs
    distributed.start(opts["device"])
    with _tokenising() as progress:
        if resume_run:
            budget = {opt.TRAIN_FIELDS[k]: opts[k] for k in ("epochs", "steps", "minutes") if _given(ctx, k)}
            run = runs.resume(resume_run, budget, progress=progress)
        else:
            lm = None
            if decoder_from:
                lm = _decoder_source(ctx, decoder_from, opts)
            data = DataConfig(corpus=corpus, **{f: opts[k] for k, f in opt.DATA_FIELDS.items()})
            model_options = {f: opts[k] for k, f in opt.MODEL_FIELDS.items() if opts[k] is not None or f == "encoder_dim"}
            cfg = TrainConfig(**{f: opts[k] for k, f in opt.TRAIN_FIELDS.items()})
            chosen = {f for k, f in {**opt.MODEL_FIELDS, **opt.TRAIN_FIELDS}.items() if _given(ctx, k)}
            run = runs.start(data, model_options, cfg, out=out, force=force, lm=lm, decoder_from=decoder_from,
                             progress=progress, chosen=chosen)
    _announce(run)
    final = _drive_training(run)
    if distributed.is_main():
        runs.remember(run.out_dir)
        _finish(final, run.out_dir)


@contextmanager
def _tokenising():
    """A status line while the corpus is read (a large one is tokenised in a stream: its count of items)."""
    with err.status("reading the corpus") as status:
        yield lambda n: status.update(f"tokenising in a stream (cached for the next run): {n:,} items")


def _decoder_source(ctx, path: str, opts: dict):
    """The language model that --decoder-from names; the options it decides are set in `opts`."""
    from .runs import decoder_settings, decoder_source
    if opts["lm"]:
        raise UserError("--decoder-from starts a VAE from a language model: leave out --lm")
    lm = decoder_source(path)
    opts.update(decoder_settings(lm.config, {k: opts[k] for k in opts if _given(ctx, k)}))
    return lm


def _announce(run) -> None:
    if run.resume is not None:
        state = run.resume["state"]
        err.print(f"resuming [bold]{_plain(str(run.out_dir))}[/] at step {state['step']:,} (epoch {state['epoch']})")
        return
    data = run.data
    note = f" (skipped {', '.join(data.skipped)})" if data.skipped else ""
    if data.cache:
        note += f"; cached in {data.cache}"
    err.print(f"corpus [bold]{_plain(data.name)}[/]: {len(data.train):,} training and {len(data.valid):,} validation "
              f"{'words' if run.info.data.unit == 'word' else 'items'}{note}")
    for line in data.notes:
        err.print(f"[yellow]note:[/] {_plain(line)}")
    if run.chose:
        err.print(f"{_plain(run.chose)} (options you give win)")
    unknown = run.unknown_characters() if run.info.decoder_from else 0
    if unknown:
        err.print(f"[yellow]note:[/] {unknown:,} characters of the corpus are not among the language model's "
                  f"and are read as <unk>: train the language model on this corpus for the best start")
    if data.labels:
        err.print("labels: " + ", ".join(f"{_plain(y)} ({n:,})" for y, n in run.label_counts().items()))
    c = run.model.config
    err.print(f"training a {c.cell.upper()} {'language model' if c.lm else 'VAE'} on {run.device} "
              f"({sum(p.numel() for p in run.model.parameters()):,} parameters) into [bold]{_plain(str(run.out_dir))}[/]")


def _finish(final: dict, out_dir: Path) -> None:
    if final.get("reason") == "interrupted":
        err.print(f"[yellow]interrupted at step {final['step']:,}:[/] saved {_plain(str(out_dir / 'last.safetensors'))} "
                  f"and a resumable state; continue with: textvae train --resume {_plain(str(out_dir))}")
        sys.exit(130)
    from .render import summary_table
    err.print(summary_table(final, out_dir))
    err.print(f"checkpoints: {out_dir / 'best.safetensors'} (best), {out_dir / 'last.safetensors'} (last)")


def _drive_training(run) -> dict:
    """Iterate the run's events behind a progress bar; the final event."""
    from .render import plan_line, refit_line, valid_line
    progress = _progress(TextColumn("{task.fields[stats]}"))
    final: dict = {}
    from .runs import stop_on_signals

    def stopping():
        err.print("\n[yellow]stopping: finishing this step and saving a checkpoint (Ctrl-C again to abort)[/]")

    with stop_on_signals(stopping) as stop, progress:
        task = None
        for ev in run.events(stop=stop):
            kind = ev["event"]
            if kind == "start":
                progress.console.print(plan_line(ev))
                task = progress.add_task("train", total=ev["total_steps"], stats="", completed=ev.get("resumed_at") or 0)
            elif kind == "step" and (ev["step"] % 5 == 0 or ev["step"] == 1):
                progress.update(task, completed=ev["step"], description=f"epoch {ev['epoch']}",
                                stats=f"loss {ev['loss']:.2f}  rec {ev['recon']:.2f}  KL {ev['kl']:.2f}  "
                                      f"β {ev['beta']:.2f}  {ev['chars_per_s'] / 1000:.0f}k char/s")
            elif kind == "refit":
                progress.update(task, total=ev["total_steps"])
                if abs(ev["total_steps"] - ev["before"]) > 0.02 * ev["before"]:
                    progress.console.print(refit_line(ev))
            elif kind == "valid":
                progress.update(task, completed=ev["step"])
                progress.console.print(valid_line(ev))
                if (ev.get("active_units", 1) == 0 or ev["kl"] < 0.1) and not run.model.config.lm and ev["items"] > 1:
                    progress.console.print(
                        f"[yellow]warning: posterior collapse: the code is barely used (KL {ev['kl']:.3f} nats, "
                        f"{ev.get('active_units', 0)} active units, MI {ev.get('mi', 0):.3f}); remedies: "
                        "--free-bits 0.25 (or more), --word-dropout 0.5, --kl-schedule cyclical[/]")
            elif kind == "done":
                final = ev
    return final


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
def generate(model_path, num, near, radius, stats, label, **opts):
    """Sample new items: codes from the prior (or near a text), decoded one per line."""
    if near is None and label is None and not stats:
        model_path = str(_model_path(model_path))
        if _generate_without_torch(model_path, num, dict(opts)):
            return
    m, dec, seed = _prepared(model_path, opts, "sample", [near] if near is not None else [], [label])
    texts: list[str] = []                           # the first STATS_ITEMS, for --stats
    for block in m.iter_generate(num, dec, seed=seed, near=near, radius=radius, label=label):
        _echo("\n".join(block))
        if stats and len(texts) < STATS_ITEMS:
            texts.extend(block[:STATS_ITEMS - len(texts)])
    if stats:
        from .data import training_items
        from .metrics import sample_report
        train_items = training_items(m.run.data)
        r = sample_report(texts, train_items or set())
        novelty = (f"{r['new']:.1%} new, {r['copied']:.1%} copies of training items; " if train_items is not None
                   else "training corpus not found, novelty unknown; ")
        err.print(f"{len(texts):,} samples{' (the first)' if num > len(texts) else ''}: {novelty}{r['duplicates']:.1%} duplicates; "
                  f"distinct-1 {r['distinct_1']:.3f}, distinct-2 {r['distinct_2']:.3f}; mean length {r['mean_length']:.1f}")


def _generate_without_torch(model_path: str, num: int, opts: dict) -> bool:
    """`generate` from the prior by `sample.Sampler`: the same items as `Model.iter_generate`, without loading
    torch, so that the first lines come at once. False (nothing printed) where the torch model is needed: beam
    search, guidance, a conditional model, a checkpoint whose arrays numpy cannot read as they are."""
    from .loop import new_seed
    from .sample import Sampler
    seed = opts.pop("seed")
    opts.pop("truncate", None)
    dec = _decoding(opts, "sample")
    if dec.strategy == "beam" or dec.guidance:
        return False
    sampler = Sampler.open(model_path)
    if sampler is None:
        return False
    blocks = sampler.iter_generate(num, dec, seed if seed is not None else new_seed())
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
    from .data import read_chunks
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
    from .api import write_codes
    from .data import read_corpus
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
        from .metrics import char_accuracy
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


# ---------------------------------------------------------------------------- evaluate

@cli.command()
@click.argument("file")
@opt.MODEL_OPTION
@opt.options(*opt.EVALUATE_OPTIONS)
def evaluate(file, model_path, baseline, samples, column, unit, max_len, limit, recon_items, num_samples, pairs,
             greedy_codes, train_file, json_path, seed, label_column, per_label, guidance, device):
    """How well a model models held-out FILE: IW-NLL, ELBO, KL, mutual information, active units,
    reconstruction, and whether its samples are new."""
    import json
    models = [_load(model_path, device)] + ([_load(baseline, device)] if baseline else [])
    label_column = label_column or next((m.run.data.label_column for m in models if m.conditional), None)
    clf = None
    if label_column:
        from .evaluate import label_judge
        with err.status("training the label classifier (character n-gram logistic regression)"):
            clf = label_judge(models, label_column, seed)
    results = [_evaluate_one(m, file, column, unit, max_len, limit, label_column, clf, samples, recon_items,
                             num_samples, train_file, seed, per_label, guidance, pairs, greedy_codes) for m in models]
    names = [("LM " if m.model.config.lm else "VAE ") + Path(str(m.path)).parent.name for m in models]
    if baseline:
        results[0]["gap_to_baseline"] = results[0]["iw_nats_per_char"] / results[1]["iw_nats_per_char"] - 1
    from .render import evaluation_table, label_lines
    err.print(evaluation_table(results, names))
    for line in label_lines(results, names):
        err.print(_plain(line))
    if baseline:
        err.print(f"IW-NLL per character: {names[0]} is {100 * results[0]['gap_to_baseline']:+.2f}% against {names[1]}")
    if json_path:
        text = json.dumps(results if baseline else results[0], indent=2) + "\n"
        write_file(Path(json_path), lambda f: f.write(text.encode("utf-8")))
        err.print(f"wrote {_plain(json_path)}")


def _evaluate_one(m, file, column, unit, max_len, limit, label_column, clf, samples, recon_items, num_samples,
                  train_file, seed, per_label, guidance, pairs, greedy_codes) -> dict:
    from .data import training_items, training_split
    from .evaluate import evaluate_model, items_to_evaluate, label_report
    items, labels = items_to_evaluate(m, file, column, unit, max_len, limit, label_column,
                                      None if clf is None else clf.labels)
    if m.unknown_chars(items):
        err.print(f"[yellow]warning:[/] {len(m.unknown_chars(items))} characters of {_plain(file)} are "
                  f"outside the vocabulary of {_plain(str(m.path))} and count as <unk>")
    progress = _progress()
    with progress:
        task = progress.add_task(f"IW-NLL (K={samples})", total=len(items))
        r = evaluate_model(m, items, samples, recon_items, num_samples, training_items(m.run.data, train_file), seed,
                           on_progress=lambda b: progress.advance(task, b), labels=labels, pairs=pairs,
                           greedy_codes=greedy_codes,
                           judge_train=None if m.conditional else training_split(m.run.data, train_file))
    if clf is not None and labels:
        r["labels"] = label_report(m, clf, items, labels, per_label, seed, guidance=guidance if m.guidable else None)
    r["file"] = file
    return r


# ---------------------------------------------------------------------------- plot

@cli.command()
@click.argument("run", required=False)
@opt.options(*opt.PLOT_OPTIONS)
def plot(run, data_path, column, label_column, limit, out_dir):
    """Write PNGs of RUN: training curves, and a PCA map of held-out items' posterior means."""
    from .evaluate import map_items
    try:
        from . import plot as plots
        plots._pyplot()
    except ImportError:
        raise UserError("textvae plot needs matplotlib: pip install 'textvae[plot]'") from None
    run_dir = _model_path(run)
    run_dir = run_dir if run_dir.is_dir() else run_dir.parent
    if not (run_dir / "metrics.jsonl").is_file():
        raise UserError(f"{run_dir} is not a run directory (no metrics.jsonl)")
    out = Path(out_dir) if out_dir else run_dir
    written = [write_file(out / "curves.png", lambda f: plots.training_curves(run_dir, f))]
    m = _load(str(run_dir))
    items, labels, _ = map_items(m, data_path, column, label_column, limit)
    if not m.model.config.lm:
        mu = m.map_codes(m.encode(items, labels=labels if m.conditional else None))
        title = (f"{'global codes' if m.model.config.word_prior else 'posterior means'} of {len(items):,} held-out "
                 "items (PCA)")
        written.append(write_file(out / "latent_map.png",
                                  lambda f: plots.latent_map(mu, items, f, labels=labels, title=title)))
    _echo("\n".join(map(str, written)))


# ---------------------------------------------------------------------------- bench

@cli.command()
@opt.options(*opt.BENCH_OPTIONS)
def bench(no_one_at_a_time, json_path, **opts):
    """Training characters/s, generation items/s and peak memory, beside the bare RNN kernels' figure."""
    import json

    from . import bench as benchmark
    from .render import bench_table
    cfg = benchmark.BenchConfig(one_at_a_time=not no_one_at_a_time, **opts)
    with err.status("benchmarking") as status:
        r = benchmark.run(cfg, progress=lambda m: status.update(f"benchmarking: {m}"))
    Console().print(bench_table(cfg, r))
    if json_path:
        write_file(Path(json_path), lambda f: f.write((json.dumps(r, indent=2) + "\n").encode("utf-8")))
        err.print(f"wrote {_plain(json_path)}")


# ---------------------------------------------------------------------------- serve

@cli.command()
@opt.MODEL_OPTION
@opt.options(*opt.SERVE_OPTIONS)
def serve(model_path, host, port, data_path, column, map_items):
    """Explore the model in a browser: homotopies, codes around a text, samples and a map of held-out items;
    the page's JSON API is under /api/. Ctrl-C stops."""
    try:
        from .serve.app import bind, loopback, run, url
    except ImportError:
        raise UserError("textvae serve needs its extra: pip install 'textvae[serve]'") from None
    from .serve import Explorer
    m = _load(model_path)
    if m.model.config.lm:
        raise UserError("a language model has no codes to explore: serve a VAE")
    explorer = Explorer.open(m, data_path, column, map_items)
    if explorer.note:
        err.print(f"[yellow]note:[/] {_plain(explorer.note)} (--data FILE gives the map its items)")
    try:
        sock = bind(host, port)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    if not loopback(host):
        err.print(f"[bold red]warning: listening on {_plain(host)}, not on a loopback address: anyone who can "
                  "reach this machine can use the model[/]")
    err.print(f"serving {_plain(str(m.path))} (Ctrl-C stops)")
    _echo(url(sock))
    run(explorer, sock)


def main():
    cli(prog_name="textvae")


if __name__ == "__main__":
    main()
