"""The `textvae` command line: the only module that prints.

A user's mistake ends in one red line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .checkpoint import CheckpointError
from .data import DataError

err = Console(stderr=True, highlight=False, soft_wrap=True)
LAST_RUN_FILE = ".textvae-last"
WARM_FREE_BITS = 0.1    # --free-bits under --decoder-from: a little information in z costs the LM's likelihood least


class UserError(Exception):
    """A mistake the user can fix; its message is all they need to see."""


def fail(message: str, code: int = 1):
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True)
    sys.exit(code)


class Group(click.Group):
    """Turns every expected failure into one line on stderr."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
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
        except (UserError, DataError, CheckpointError) as e:
            fail(_plain(str(e)))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except MemoryError:
            fail("out of memory: try a smaller --batch-size or model")
        except Exception as e:  # a bug of ours: still one line, with a way to see the traceback
            if os.environ.get("TEXTVAE_DEBUG"):
                raise
            fail(f"unexpected {type(e).__name__}: {_plain(str(e))[:300]} "
                 "(please report it; TEXTVAE_DEBUG=1 shows the traceback)", 3)
        if isinstance(rv, int):
            sys.exit(rv)
        sys.exit(0)


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
    if model:
        return Path(model)
    marker = Path(LAST_RUN_FILE)
    if marker.is_file():
        path = Path(marker.read_text(encoding="utf-8").strip())
        if path.exists():
            err.print(f"using model [bold]{_plain(str(path))}[/] (the last `textvae train` here; --model to choose)")
            return path
    raise UserError("no model given and none trained here: run `textvae train FILE` first, or pass --model PATH")


def _load(model: str | None):
    from .api import load
    return load(_model_path(model))


def _check_nonempty(texts) -> None:
    for t in texts:
        if not t.strip():
            raise UserError("empty text: give at least one character")


def _check_texts(m, texts) -> None:
    _check_nonempty(texts)
    unknown = m.unknown_chars(texts)
    if unknown:
        shown = " ".join(repr(c) for c in sorted(unknown)[:10])
        err.print(f"[yellow]warning:[/] characters the model never saw map to <unk>: {_plain(shown)}")


@contextmanager
def _graceful_stop():
    """First Ctrl-C (or SIGTERM) asks training to stop after the current step and save; a second one aborts."""
    stop = threading.Event()
    old = {}

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        err.print("\n[yellow]stopping: finishing this step and saving a checkpoint (Ctrl-C again to abort)[/]")

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


# ---------------------------------------------------------------------------- train

@cli.command()
@click.argument("corpus", required=False)
@click.option("--resume", "resume_run", type=click.Path(), help="Continue an interrupted run (its directory) where it stopped.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory [default: runs/<corpus name>].")
@click.option("--valid", "valid_path", help="Validation file [default: 5% of CORPUS, chosen by a hash of each item].")
@click.option("--unit", type=click.Choice(["line", "word"]), default="line", show_default=True,
              help="An item is a whole line, or each whitespace-separated word.")
@click.option("--column", help="Text column of a CSV/TSV/JSONL/Parquet file or dataset [default: 'text' or the only column].")
@click.option("--label", "label_column", help="Label column: train a conditional VAE (Sohn et al. 2015) on it.")
@click.option("--max-len", type=click.IntRange(1), default=256, show_default=True,
              help="Skip items longer than this many characters.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the corpus.")
@click.option("--errors", type=click.Choice(["strict", "replace", "ignore"]), default="strict", show_default=True,
              help="What to do with bytes that are not valid in --encoding.")
@click.option("--cell", type=click.Choice(["lstm", "gru"]), default="lstm", show_default=True, help="Recurrent unit.")
@click.option("--embed-dim", type=click.IntRange(1, 65536), default=64, show_default=True, help="Character embedding size.")
@click.option("--hidden-dim", type=click.IntRange(1, 65536), default=256, show_default=True,
              help="Decoder RNN state size.")
@click.option("--encoder-dim", type=click.IntRange(1, 65536),
              help="Encoder RNN state size (each direction) [default: half of --hidden-dim].")
@click.option("--latent-dim", type=click.IntRange(1, 65536), default=32, show_default=True, help="Size of the code z.")
@click.option("--layers", type=click.IntRange(1, 16), default=1, show_default=True, help="Stacked RNN layers.")
@click.option("--bidirectional/--unidirectional", default=True, show_default=True, help="Encoder direction.")
@click.option("--z-every-step/--z-initial-only", default=True, show_default=True,
              help="Feed z to the decoder at every step, or only through its initial state (plain Bowman).")
@click.option("--lm", is_flag=True, help="Train a plain character language model (no latent code), as a baseline.")
@click.option("--decoder-from", "decoder_from", metavar="LM_RUN",
              help="Start the VAE's decoder from a trained --lm run (its architecture and characters too), then "
                   "learn the code: the VAE comes closest to that model's likelihood. Changes the defaults of "
                   f"--kl-schedule to constant and --free-bits to {WARM_FREE_BITS}.")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True, help="Passes over the training items.")
@click.option("--steps", type=click.IntRange(1), help="Stop after this many optimiser steps instead.")
@click.option("--minutes", type=click.FloatRange(0, min_open=True), help="Stop (and save) after this much time.")
@click.option("--patience", type=click.IntRange(1), help="Early stopping: stop after this many epochs without a better validation -ELBO.")
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True, help="Items per step.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-3, show_default=True, help="Adam learning rate.")
@click.option("--kl-schedule", type=click.Choice(["constant", "linear", "logistic", "cyclical"]), default="linear",
              help="KL annealing (Bowman et al. 2016; cyclical: Fu et al. 2019) [default: linear; constant with "
                   "--decoder-from].")
@click.option("--kl-warmup", type=click.IntRange(1), default=2000, show_default=True,
              help="Steps for beta to reach its maximum (steps per cycle when cyclical).")
@click.option("--beta", type=click.FloatRange(0), default=1.0, show_default=True, help="Final weight of the KL term.")
@click.option("--free-bits", type=click.FloatRange(0), default=0.25,
              help="Nats per latent dimension that cost nothing (Kingma et al. 2016); 0 turns it off "
                   f"[default: 0.25; {WARM_FREE_BITS} with --decoder-from].")
@click.option("--word-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True,
              help="Chance of hiding each decoder input character (Bowman et al. 2016).")
@click.option("--label-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="With --label: chance of hiding an item's label, so the model also learns items with no "
                   "label and can be guided towards one when decoding (--guidance); 0 turns it off.")
@click.option("--clip", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True, help="Gradient-norm clipping.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for all randomness.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@click.option("--force", is_flag=True, help="Replace a run already in the output directory.")
@click.option("--stream", is_flag=True,
              help="Read a large text file in a stream into a memory-mapped cache (automatic above 64 MB).")
@click.pass_context
def train(ctx, corpus, resume_run, out, valid_path, unit, column, label_column, max_len, encoding, errors, cell, embed_dim, hidden_dim, encoder_dim, latent_dim,
          layers, bidirectional, z_every_step, lm, decoder_from, epochs, steps, minutes, patience, batch_size, lr, kl_schedule, kl_warmup, beta,
          free_bits, word_dropout, label_dropout, clip, seed, device, amp, force, stream):
    """Train a VAE on CORPUS: a UTF-8 text file (one item per line), a CSV/TSV/JSONL/Parquet file with
    --column, a folder holding train.txt (and valid.txt), or hf:NAME[:CONFIG] for a Hugging Face dataset.
    Ctrl-C saves a resumable state; `textvae train --resume RUN` continues it."""
    import torch

    from .model import ModelConfig, TextVAE
    from .train import TrainConfig, TrainingError, pick_device
    from .train import train as run_training

    _start_distributed(device)
    if resume_run:
        _resume(ctx, resume_run, epochs, steps, minutes)
        return
    if not corpus:
        raise UserError("give a CORPUS to train on (or --resume RUN)")
    from .data import resolve_corpus
    source, folder_valid = resolve_corpus(corpus)
    valid_path = valid_path or folder_valid
    start = None
    if decoder_from:
        start, start_tokenizer = _decoder_source(ctx, decoder_from, lm)
        sc = start.config
        cell, embed_dim, hidden_dim, layers = sc.cell, sc.embed_dim, sc.hidden_dim, sc.num_layers
        kl_schedule = kl_schedule if _given(ctx, "kl_schedule") else "constant"
        free_bits = free_bits if _given(ctx, "free_bits") else WARM_FREE_BITS
    tokenizer, train_data, valid_data, name, note, fingerprint, label_names = _prepare_data(
        source, valid_path, unit, column, max_len, encoding, errors, stream,
        tokenizer=start_tokenizer if start is not None else None, label_column=label_column)
    out_dir = Path(out) if out else Path("runs") / name
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a directory")
    holds_run = out_dir.is_dir() and any((out_dir / f).exists() for f in RUN_FILES)
    if holds_run and not force:
        raise UserError(f"{out_dir} already holds a run: pass --force to replace it, or --out DIR")
    _barrier()                              # every process has looked before the first one writes
    try:
        torch_device = pick_device(device)
    except TrainingError as e:
        raise UserError(str(e)) from None
    err.print(f"corpus [bold]{_plain(name)}[/]: {len(train_data):,} training and {len(valid_data):,} validation "
              f"{'words' if unit == 'word' else 'items'}{note}")
    if start is not None:
        from .tokenizer import UNK_ID
        import numpy as np
        unknown = int((np.asarray(train_data.flat) == UNK_ID).sum())
        if unknown:
            err.print(f"[yellow]note:[/] {unknown:,} characters of the corpus are not among the language model's "
                      f"and are read as <unk>: train the language model on this corpus for the best start")

    model_cfg = ModelConfig(vocab_size=tokenizer.vocab_size, cell=cell, embed_dim=embed_dim, hidden_dim=hidden_dim,
                            encoder_dim=encoder_dim, latent_dim=latent_dim, num_layers=layers, bidirectional=bidirectional,
                            z_every_step=z_every_step, lm=lm, num_labels=len(label_names or []),
                            null_label=bool(label_names) and label_dropout > 0)
    cfg = TrainConfig(epochs=epochs, max_steps=steps, max_minutes=minutes, patience=patience, batch_size=batch_size, lr=lr,
                      clip=clip, kl_schedule=kl_schedule, kl_warmup=kl_warmup, beta=beta, free_bits=free_bits,
                      word_dropout=word_dropout, label_dropout=label_dropout, seed=seed, device=device, amp=amp)
    torch.manual_seed(seed)
    model = TextVAE(model_cfg)
    if start is not None:
        model.start_decoder_from(start)
    info = {"corpus": source, "valid_corpus": valid_path, "unit": unit, "column": column, "max_len": max_len,
            "encoding": encoding, "errors": errors, "stream": stream, "longest_item": int(train_data.lengths.max()),
            "corpus_md5": fingerprint, "label_column": label_column, "labels": label_names, "decoder_from": decoder_from,
            "textvae_version": __version__}
    if label_names:
        counts = {y: int((train_data.label_ids == i).sum()) for i, y in enumerate(label_names)}
        err.print("labels: " + ", ".join(f"{_plain(y)} ({n:,})" for y, n in counts.items()))

    if holds_run and _is_main():
        for f in RUN_FILES:
            (out_dir / f).unlink(missing_ok=True)
    if _is_main():
        _check_writable(out_dir)
    kind = "language model" if lm else "VAE"
    err.print(f"training a {cell.upper()} {kind} on {torch_device} "
              f"({sum(p.numel() for p in model.parameters()):,} parameters) into [bold]{_plain(str(out_dir))}[/]")
    final = _drive_training(run_training, model, tokenizer, train_data, valid_data, cfg, out_dir, info)
    _finish(final, out_dir)


def _given(ctx, key: str) -> bool:
    """Whether the option `key` was typed on the command line (not left at its default)."""
    return ctx.get_parameter_source(key) == click.core.ParameterSource.COMMANDLINE


def _decoder_source(ctx, run: str, lm: bool):
    """The language model (and its tokenizer) that --decoder-from names, checked against the options given."""
    from .checkpoint import load
    if lm:
        raise UserError("--decoder-from starts a VAE from a language model: leave out --lm")
    model, tokenizer, _ = load(run)
    c = model.config
    if not c.lm or c.num_labels:
        raise UserError(f"--decoder-from {run} is not a plain language model: train one with `textvae train CORPUS --lm`")
    for key, value in (("cell", c.cell), ("embed_dim", c.embed_dim), ("hidden_dim", c.hidden_dim),
                       ("layers", c.num_layers)):
        if _given(ctx, key) and ctx.params[key] != value:
            raise UserError(f"--{key.replace('_', '-')} {ctx.params[key]} differs from the language model's "
                            f"{value}: leave it out, the decoder takes the language model's")
    return model, tokenizer


def _start_distributed(device: str) -> None:
    """Under torchrun (WORLD_SIZE > 1): join the process group; only rank 0 talks."""
    import os
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return
    import torch
    import torch.distributed as dist
    if not dist.is_initialized():
        use_nccl = device != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    if dist.get_rank() != 0:
        err.quiet = True


def _is_main() -> bool:
    import torch.distributed as dist
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _barrier() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


RUN_FILES = ("best.safetensors", "last.safetensors", "resume.safetensors", "metrics.jsonl", "run.json")


def _items_md5(items) -> str:
    import hashlib
    h = hashlib.md5()
    for item in items:
        h.update(item.encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()


def _prepare_data(source, valid_path, unit, column, max_len, encoding, errors, stream, tokenizer=None,
                  label_column=None, label_names=None):
    """(tokenizer, train data, valid data, corpus name, note, fingerprint, label names) for a corpus.

    Plain text files above 64 MB (or with --stream) are tokenised in a stream into a memory-mapped
    cache keyed by their content, so their text never sits in memory as Python strings."""
    from .data import STREAM_THRESHOLD, EncodedItems, corpus_name, read_corpus, stream_encode
    from .tokenizer import CharTokenizer
    path = Path(source)
    plain = not source.startswith("hf:") and path.is_file() and path.suffix.lower() not in (
        ".csv", ".tsv", ".jsonl", ".json", ".parquet")
    if plain and (stream or path.stat().st_size > STREAM_THRESHOLD):
        if column or label_column:
            raise UserError("--column and --label do not apply to a plain text file")
        with err.status("tokenising in a stream (cached for the next run)") as status:
            res = stream_encode(source, unit=unit, max_len=max_len, encoding=encoding, errors=errors,
                                progress=lambda n: status.update(f"tokenising in a stream: {n:,} items"))
        tok = res["tokenizer"]
        if tokenizer is not None and tokenizer.itos != tok.itos:
            raise UserError(f"the corpus {source} changed since this run started: cannot resume it exactly")
        valid = res["valid"]
        if valid_path:
            valid = EncodedItems(read_corpus(valid_path, unit=unit, max_len=max_len, encoding=encoding,
                                             errors=errors).items, tok)
        st = res["stats"]
        skipped = [f"{st[k]:,} {what}" for k, what in (("skipped_long", f"longer than --max-len {max_len}"),
                                                       ("skipped_blank", "blank")) if st.get(k)]
        note = (f" (skipped {', '.join(skipped)})" if skipped else "") + f"; cached in {res['cache']}"
        return tok, res["train"], valid, corpus_name(source), note, Path(res["cache"]).name, None
    train_items, valid_items, train_labels, valid_labels, name, note = _training_split(
        source, valid_path, unit, column, max_len, encoding, errors, label_column)
    tok = tokenizer or CharTokenizer.fit(train_items)
    fingerprint = _items_md5(train_items)
    if label_column:
        names = label_names or sorted(set(train_labels))
        index = {y: i for i, y in enumerate(names)}
        if any(y not in index for y in train_labels):
            raise UserError(f"the labels of {source} changed since this run started")
        fingerprint = _items_md5([f"{x}\t{y}" for x, y in zip(train_items, train_labels)])
        return (tok, EncodedItems(train_items, tok, [index[y] for y in train_labels]),
                EncodedItems(valid_items, tok, [index[y] for y in valid_labels]), name, note, fingerprint, names)
    return tok, EncodedItems(train_items, tok), EncodedItems(valid_items, tok), name, note, fingerprint, None


def _training_split(source, valid_path, unit, column, max_len, encoding, errors, label_column=None):
    """Training and validation items (and labels), the corpus name, and a note of what was skipped."""
    from .data import read_corpus, split_valid
    data = read_corpus(source, unit=unit, column=column, max_len=max_len, encoding=encoding, errors=errors,
                       label_column=label_column)
    if valid_path:
        valid_corpus = read_corpus(valid_path, unit=unit, column=column, max_len=max_len, encoding=encoding,
                                   errors=errors, label_column=label_column)
        train_items, valid_items = data.items, valid_corpus.items
        train_labels, valid_labels = data.labels, valid_corpus.labels
    elif label_column:
        train_items, valid_items, train_labels, valid_labels = split_valid(data.items, labels=data.labels)
    else:
        (train_items, valid_items), train_labels, valid_labels = split_valid(data.items), None, None
    skipped = []
    if data.skipped_long:
        skipped.append(f"{data.skipped_long:,} longer than --max-len {max_len}")
    if data.skipped_blank:
        skipped.append(f"{data.skipped_blank:,} blank")
    if label_column:
        missing = sum(not y for y in train_labels) + sum(not y for y in valid_labels)
        train_items, train_labels = _keep(train_items, train_labels, lambda y: bool(y))
        names = set(train_labels)
        unknown = sum(1 for y in valid_labels if y and y not in names)
        valid_items, valid_labels = _keep(valid_items, valid_labels, lambda y: y in names)
        if missing:
            skipped.append(f"{missing:,} with no label")
        if unknown:
            skipped.append(f"{unknown:,} validation items whose label never occurs in training")
        if not train_items:
            raise UserError(f"no item of {source} has a label in column {label_column!r}")
        if not valid_items:
            valid_items, valid_labels = train_items[-1:], train_labels[-1:]
    note = f" (skipped {', '.join(skipped)})" if skipped else ""
    return train_items, valid_items, train_labels, valid_labels, data.name, note


def _keep(items, labels, ok):
    pairs = [(x, y) for x, y in zip(items, labels) if ok(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to {out_dir}: {e.strerror}") from None


def _resume(ctx, run: str, epochs, steps, minutes) -> None:
    """Continue the run in directory `run` from its resume.safetensors."""
    from .checkpoint import load_training_state
    from .train import TrainConfig
    from .train import train as run_training
    run_dir = Path(run)
    saved = load_training_state(run_dir)
    info = dict(saved["extra"])
    cfg_dict = dict(info.pop("train_config"))
    given = {name: value for name, value, key in (("epochs", epochs, "epochs"), ("max_steps", steps, "steps"),
                                                  ("max_minutes", minutes, "minutes"))
             if _given(ctx, key)}
    cfg = TrainConfig.from_dict({**cfg_dict, **given})
    tokenizer = saved["tokenizer"]
    _, train_data, valid_data, _, _, fingerprint, _ = _prepare_data(
        info["corpus"], info.get("valid_corpus"), info.get("unit", "line"), info.get("column"), info.get("max_len"),
        info.get("encoding", "utf-8"), info.get("errors", "strict"), info.get("stream", False), tokenizer=tokenizer,
        label_column=info.get("label_column"), label_names=info.get("labels"))
    if info.get("corpus_md5") and fingerprint != info["corpus_md5"]:
        raise UserError(f"the corpus {info['corpus']} changed since this run started: cannot resume it exactly")
    _check_writable(run_dir)
    err.print(f"resuming [bold]{_plain(str(run_dir))}[/] at step {saved['state']['step']:,} "
              f"(epoch {saved['state']['epoch']})")
    final = _drive_training(run_training, saved["model"], tokenizer, train_data, valid_data, cfg, run_dir, info,
                            resume=saved)
    _finish(final, run_dir)


def _finish(final: dict, out_dir: Path) -> None:
    if not _is_main():
        return
    Path(LAST_RUN_FILE).write_text(str(out_dir.resolve()) + "\n", encoding="utf-8")
    if final.get("reason") == "interrupted":
        err.print(f"[yellow]interrupted at step {final['step']:,}:[/] saved {_plain(str(out_dir / 'last.safetensors'))} "
                  f"and a resumable state; continue with: textvae train --resume {_plain(str(out_dir))}")
        sys.exit(130)
    _summary(final, out_dir)


def _drive_training(run_training, *args, resume=None) -> dict:
    from .train import TrainingError
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                        console=err, transient=False)
    final: dict = {}
    with _graceful_stop() as stop, progress:
        task = None
        try:
            for ev in run_training(*args, stop=stop, resume=resume):
                kind = ev["event"]
                if kind == "start":
                    task = progress.add_task("train", total=ev["total_steps"], stats="",
                                             completed=ev.get("resumed_at") or 0)
                elif kind == "step":
                    if ev["step"] % 5 == 0 or ev["step"] == 1:
                        progress.update(task, completed=ev["step"], description=f"epoch {ev['epoch']}",
                                        stats=f"loss {ev['loss']:.2f}  rec {ev['recon']:.2f}  KL {ev['kl']:.2f}  "
                                              f"β {ev['beta']:.2f}  {ev['chars_per_s'] / 1000:.0f}k char/s")
                elif kind == "valid":
                    progress.update(task, completed=ev["step"])
                    line = (f"epoch {ev['epoch']}: valid -ELBO {ev['nll_elbo']:.3f}/item "
                            f"({ev['nats_per_char']:.3f} nats/char), rec {ev['recon']:.3f}, KL {ev['kl']:.3f}, "
                            f"MI {ev.get('mi', 0):.2f}, AU {ev['active_units']}")
                    if "exact" in ev:
                        line += f", exact {100 * ev['exact']:.1f}%"
                    progress.console.print(line + ("  [green]best[/]" if ev["best"] else ""))
                    if (ev.get("active_units", 1) == 0 or ev["kl"] < 0.1) and not args[0].config.lm:
                        progress.console.print(
                            f"[yellow]warning: posterior collapse: the code is barely used (KL {ev['kl']:.3f} nats, "
                            f"{ev.get('active_units', 0)} active units, MI {ev.get('mi', 0):.3f}); remedies: "
                            "--free-bits 0.25 (or more), --word-dropout 0.5, --kl-schedule cyclical[/]")
                elif kind == "done":
                    final = ev
        except TrainingError as e:
            raise UserError(str(e)) from None
    return final


def _summary(final: dict, out_dir: Path) -> None:
    best = final.get("best") or {}
    table = Table(title=f"run {out_dir} ({final.get('reason', '?')} after {final.get('step', 0)} steps, "
                        f"{final.get('time', 0) / 60:.1f} min)")
    table.add_column("best validation", style="bold")
    table.add_column("value", justify="right")
    rows = [("epoch", "epoch", "{:d}"), ("-ELBO per item (nats)", "nll_elbo", "{:.3f}"),
            ("  reconstruction", "recon", "{:.3f}"), ("  KL", "kl", "{:.3f}"),
            ("nats per character", "nats_per_char", "{:.4f}"), ("bits per character", "bits_per_char", "{:.4f}"),
            ("active units", "active_units", "{:d}"), ("exact reconstruction", "exact", "{:.1%}"),
            ("character accuracy", "char_accuracy", "{:.1%}")]
    for label, key, fmt in rows:
        if key in best:
            table.add_row(label, fmt.format(best[key]))
    err.print(table)
    err.print(f"checkpoints: {out_dir / 'best.safetensors'} (best), {out_dir / 'last.safetensors'} (last)")


# ---------------------------------------------------------------------------- decoding options

def decoding_options(f):
    """The options every decoding command shares."""
    options = [
        click.option("--strategy", type=click.Choice(["greedy", "sample", "beam"]), default=None,
                     help="How to pick characters [default: sample for generate, greedy otherwise]."),
        click.option("--greedy", is_flag=True, help="Same as --strategy greedy."),
        click.option("--temperature", "-t", type=click.FloatRange(0), default=1.0, show_default=True,
                     help="Sampling temperature; 0 is greedy."),
        click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
                     help="Sample among the k best characters (0: all)."),
        click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
                     help="Nucleus sampling: the smallest set of characters with this much probability."),
        click.option("--beam", type=click.IntRange(1, 256), default=5, show_default=True, help="Beam width (--strategy beam)."),
        click.option("--length-penalty", type=click.FloatRange(0), default=1.0, show_default=True,
                     help="Beam ranking: log-probability / length^this (0: raw log-probability)."),
        click.option("--repetition-penalty", type=click.FloatRange(1.0), default=1.0, show_default=True,
                     help="Discourage characters already emitted (Keskar et al. 2019); 1: off."),
        click.option("--guidance", type=click.FloatRange(0),
                     help="A conditional model trained with label dropout: how hard to steer towards the label "
                          "(classifier-free guidance; 0: none) [default: 1]."),
        click.option("--seed", type=int, help="Seed: the same seed prints the same items."),
        click.option("--max-len", type=click.IntRange(1), help="Longest item, in characters [default: from the training data]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _decoding(opts: dict, default: str) -> dict:
    strategy = opts.pop("strategy") or default
    if opts.pop("greedy"):
        strategy = "greedy"
    return {"strategy": strategy, "temperature": opts.pop("temperature"), "top_k": opts.pop("top_k"),
            "top_p": opts.pop("top_p"), "beam": opts.pop("beam"), "length_penalty": opts.pop("length_penalty"),
            "repetition_penalty": opts.pop("repetition_penalty"), "max_len": opts.pop("max_len"),
            "guidance": opts.pop("guidance")}


LABEL_OPTION = click.option("--label", help="A conditional model's label to decode (and encode) under.")


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


MODEL_OPTION = click.option("--model", "model_path",
                            help="Checkpoint file or run directory [default: the last one trained here].")


# ---------------------------------------------------------------------------- generate

@cli.command()
@MODEL_OPTION
@click.option("-n", "--num", type=click.IntRange(1), default=10, show_default=True, help="How many items.")
@decoding_options
@click.option("--near", help="Sample codes around this text's posterior instead of from the prior.")
@click.option("--radius", type=click.FloatRange(0), default=1.0, show_default=True,
              help="With --near: how many posterior standard deviations to wander.")
@click.option("--stats", is_flag=True, help="Also report (on stderr) how many samples are new, copied or repeated.")
@LABEL_OPTION
def generate(model_path, num, near, radius, stats, label, **opts):
    """Sample new items: codes from the prior (or near a text), decoded one per line."""
    if near is not None:
        _check_nonempty([near])
    seed = opts.pop("seed")
    dec = _decoding(opts, "sample")
    m = _load(model_path)
    _label_check(m, label, guidance=dec["guidance"])
    if near is not None:
        _check_texts(m, [near])
    texts = m.generate(num, seed=seed, near=near, radius=radius, label=label, **dec)
    for text in texts:
        click.echo(text)
    if stats:
        from .metrics import sample_report
        train_items = _training_items(m, None)
        r = sample_report(texts, train_items or set())
        novelty = (f"{r['new']:.1%} new, {r['copied']:.1%} copies of training items; " if train_items is not None
                   else "training corpus not found, novelty unknown; ")
        err.print(f"{len(texts)} samples: {novelty}{r['duplicates']:.1%} duplicates; "
                  f"distinct-1 {r['distinct_1']:.3f}, distinct-2 {r['distinct_2']:.3f}; mean length {r['mean_length']:.1f}")


# ---------------------------------------------------------------------------- reconstruct, encode

def _texts_from(texts, file) -> list[str]:
    from .data import read_corpus
    items = list(texts)
    if file:
        items += read_corpus(file).items
    if not items:
        raise UserError("nothing to read: give texts, or --file FILE")
    _check_nonempty(items)
    return items


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--file", "file", help="Also every line of this file.")
@MODEL_OPTION
@decoding_options
@click.option("--label", help="A conditional model: the texts' own label.")
@click.option("--to-label", help="A conditional model: decode under this label instead (label transfer).")
def reconstruct(texts, file, model_path, label, to_label, **opts):
    """Encode each text and decode its posterior mean: input, a tab, then its reconstruction.
    With --label and --to-label, the text is re-written under another label."""
    items = _texts_from(texts, file)
    seed = opts.pop("seed")
    dec = _decoding(opts, "greedy")
    m = _load(model_path)
    _label_check(m, label, to_label, guidance=dec["guidance"])
    _check_texts(m, items)
    for a, b in zip(items, m.reconstruct(items, seed=seed, label=label, to_label=to_label, **dec)):
        click.echo(f"{a}\t{b}")


@cli.command()
@click.argument("file")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="codes.npy (an array, N x latent_dim) or codes.jsonl (one object per item).")
@click.option("--logvar", is_flag=True, help="Also the posterior log-variances (.npy: a second file NAME.logvar.npy).")
@click.option("--column", help="Text column of a table file.")
@MODEL_OPTION
@LABEL_OPTION
def encode(file, out_path, logvar, column, model_path, label):
    """Posterior means of every item of FILE, in input order."""
    import json as _json

    import numpy as np

    from .data import read_corpus
    out = Path(out_path)
    if out.suffix not in (".npy", ".jsonl"):
        raise UserError(f"--out must end in .npy or .jsonl, not {out.suffix or 'nothing'}")
    m = _load(model_path)
    _label_check(m, label)
    items = read_corpus(file, unit=m.extra.get("unit") or "line", column=column).items
    unknown = m.unknown_chars(items)
    if unknown:
        err.print(f"[yellow]warning:[/] {len(unknown)} characters never seen in training map to <unk>")
    mu, lv = m.encode(items, return_logvar=True, labels=label)
    if out.suffix == ".npy":
        np.save(out, mu)
        if logvar:
            np.save(out.with_suffix(".logvar.npy"), lv)
    elif out.suffix == ".jsonl":
        with open(out, "w", encoding="utf-8") as f:
            for i, text in enumerate(items):
                rec = {"text": text, "mu": [round(float(x), 6) for x in mu[i]]}
                if logvar:
                    rec["logvar"] = [round(float(x), 6) for x in lv[i]]
                f.write(_json.dumps(rec, ensure_ascii=False) + "\n")
    err.print(f"wrote {len(items):,} codes of dimension {mu.shape[1]} to {_plain(str(out))}")


# ---------------------------------------------------------------------------- interpolate, analogy

@cli.command()
@click.argument("a", required=False)
@click.argument("b", required=False)
@MODEL_OPTION
@click.option("--steps", type=click.IntRange(2), default=7, show_default=True, help="Points on the path, endpoints included.")
@click.option("--method", type=click.Choice(["lerp", "slerp"]), default="lerp", show_default=True,
              help="Straight line, or great circle (White 2016), between the two codes.")
@click.option("--unique", is_flag=True, help="Drop a step whose text is the same as the step before.")
@click.option("--random", "random_ends", is_flag=True, help="Between two codes drawn from the prior instead of A and B.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Also draw the path: .html or .png, changed characters highlighted.")
@decoding_options
@click.option("--label", help="A conditional model: the label kept along the path (the label of A).")
@click.option("--label-b", help="A conditional model: B's label; the path then moves between the two labels too.")
def interpolate(a, b, model_path, steps, method, unique, random_ends, out_path, label, label_b, **opts):
    """Decode the points between the codes of A and B (Bowman et al. 2016, section 5), one line per step."""
    if not random_ends:
        if a is None or b is None:
            raise UserError("give two texts A and B, or --random")
        _check_nonempty([a, b])
    if out_path and Path(out_path).suffix.lower() not in (".html", ".png"):
        raise UserError("--out must end in .html or .png")
    seed = opts.pop("seed")
    dec = _decoding(opts, "greedy")
    m = _load(model_path)
    _label_check(m, label, label_b, guidance=dec["guidance"])
    if random_ends:
        z = m.sample_prior(2, seed)
        ends = (z[0], z[1])
    else:
        _check_texts(m, [a, b])
        ends = (a, b)
    texts = m.interpolate(*ends, steps=steps, method=method, seed=seed, label=label, label_b=label_b, **dec)
    fractions = [i / (steps - 1) for i in range(steps)]
    if unique:
        keep = [i for i in range(steps) if i == 0 or texts[i] != texts[i - 1]]
        texts, fractions = [texts[i] for i in keep], [fractions[i] for i in keep]
    for f, text in zip(fractions, texts):
        click.echo(f"{f:.2f}\t{text}")
    if out_path:
        from .render import interpolation_html, interpolation_png
        path = Path(out_path)
        if path.suffix.lower() == ".html":
            path.write_text(interpolation_html(texts, fractions), encoding="utf-8")
        else:
            try:
                interpolation_png(texts, fractions, path)
            except ImportError:
                raise UserError("a .png needs matplotlib: pip install 'textvae[plot]' (or use .html)") from None
        err.print(f"wrote {_plain(str(path))}")


@cli.command()
@click.argument("a")
@click.argument("b")
@click.argument("c")
@MODEL_OPTION
@decoding_options
@LABEL_OPTION
def analogy(a, b, c, model_path, label, **opts):
    """Latent arithmetic: decode z_B - z_A + z_C ("A is to B as C is to ?")."""
    _check_nonempty([a, b, c])
    seed = opts.pop("seed")
    dec = _decoding(opts, "greedy")
    m = _load(model_path)
    _label_check(m, label, guidance=dec["guidance"])
    _check_texts(m, [a, b, c])
    click.echo(m.analogy(a, b, c, seed=seed, label=label, **dec))


# ---------------------------------------------------------------------------- evaluate

def _read_eval_items(m, path, column, unit, max_len, label_column=None):
    from .data import read_corpus
    unit = unit or m.extra.get("unit") or "line"
    return read_corpus(path, unit=unit, column=column, max_len=max_len, label_column=label_column)


def _label_judge(models, label_column: str, seed: int):
    """The n-gram classifier that judges labels, trained on the (first labelled) model's training split."""
    from .classifier import NgramClassifier
    from .data import read_corpus, split_valid
    m = next((x for x in models if x.conditional), models[0])
    source = m.extra.get("corpus")
    if not source or (not source.startswith("hf:") and not Path(source).is_file()):
        raise UserError("judging labels needs the model's training corpus, which is not at hand")
    corpus = read_corpus(source, unit=m.extra.get("unit") or "line", column=m.extra.get("column"),
                         label_column=m.extra.get("label_column") or label_column)
    if m.extra.get("valid_corpus"):
        items, labels = corpus.items, corpus.labels
    else:
        items, _, labels, _ = split_valid(corpus.items, labels=corpus.labels)
    items, labels = _keep(items, labels, bool)
    with err.status("training the label classifier (character n-gram logistic regression)"):
        return NgramClassifier.fit(items, labels, seed=seed)


def _training_items(m, explicit: str | None):
    """The model's training items, to tell copies from new samples (None if the corpus is not at hand)."""
    from .data import read_corpus
    source = explicit or m.extra.get("corpus")
    if not source or (not source.startswith("hf:") and not Path(source).is_file()):
        return None
    try:
        return set(read_corpus(source, unit=m.extra.get("unit") or "line", column=m.extra.get("column")).items)
    except DataError:
        return None


def evaluate_model(m, items, samples: int, recon_items: int | None, num_samples: int, train_items, seed: int,
                   on_progress=None, labels=None) -> dict:
    """Every figure `textvae evaluate` reports, as one dict (`labels`: the items' labels, conditional models)."""
    from .data import EncodedItems
    from .metrics import iw_nll, posterior_stats, reconstruction_report, sample_report
    label_ids = None
    if m.conditional:
        label_ids = m.label_ids(labels, len(items)).cpu().numpy()
    data = EncodedItems(items, m.tokenizer, label_ids)
    t0 = time.monotonic()
    out = {"model": str(m.path), "lm": m.model.config.lm, "conditional": m.conditional}
    out.update(iw_nll(m.model, data, samples=samples, seed=seed, progress=on_progress))
    out.update(posterior_stats(m.model, data, seed=seed))
    if not m.model.config.lm:
        k = len(items) if recon_items is None else min(recon_items, len(items))
        subset = items[:k]
        rec = m.reconstruct(subset, label=labels[:k] if m.conditional else None)
        out["reconstruction"] = reconstruction_report(subset, rec)
    if num_samples:
        gen_labels = [labels[i % len(labels)] for i in range(num_samples)] if m.conditional else None
        gen = m.generate(num_samples, seed=seed, label=gen_labels)
        report = sample_report(gen, train_items if train_items is not None else set())
        if train_items is None:
            report.pop("copied"), report.pop("new")
        out["sampling"] = report
    out["seconds"] = time.monotonic() - t0
    return out


def label_report(m, clf, items, labels, per_label: int, seed: int, guidance: float | None = None) -> dict:
    """How well generation follows labels, judged by `clf`: agreement for a conditional model, the shares of
    predicted labels for an unconditional one (which should sit near the class prior)."""
    from collections import Counter
    prior = {y: n / len(labels) for y, n in sorted(Counter(labels).items())}
    out = {"classifier_accuracy": clf.accuracy(items, labels), "class_prior": prior}
    if m.conditional:
        by_label = {}
        for i, y in enumerate(m.labels):
            pred = clf.predict(m.generate(per_label, seed=seed + i, label=y, guidance=guidance))
            by_label[y] = sum(p == y for p in pred) / per_label
        out["label_agreement_by_label"] = by_label
        out["label_agreement"] = sum(by_label.values()) / len(by_label)
        out["guidance"] = m.resolve_guidance(guidance)
    else:
        pred = clf.predict(m.generate(per_label * max(len(prior), 1), seed=seed))
        shares = Counter(pred)
        out["predicted_label_shares"] = {y: shares.get(y, 0) / len(pred) for y in prior}
    return out


def _eval_table(results: list[dict], names: list[str]) -> Table:
    table = Table(title="held-out evaluation")
    table.add_column("metric", style="bold")
    for name in names:
        table.add_column(name, justify="right")

    def get(r, key):
        if "." in key:
            a, b = key.split(".")
            return (r.get(a) or {}).get(b)
        return r.get(key)

    rows = [("items", "items", "{:,}"), ("IW-NLL per item (nats)", "iw_nll", "{:.3f}"),
            ("IW-NLL per char (nats)", "iw_nats_per_char", "{:.4f}"), ("IW-NLL per char (bits)", "iw_bits_per_char", "{:.4f}"),
            ("perplexity per char", "perplexity", "{:.3f}"), ("importance samples K", "samples", "{:d}"),
            ("-ELBO per item", "nll_elbo", "{:.3f}"), ("-ELBO per char", "elbo_nats_per_char", "{:.4f}"),
            ("  reconstruction", "recon", "{:.3f}"), ("  KL", "kl", "{:.3f}"),
            ("mutual information I(x;z)", "mi", "{:.3f}"), ("active units", "active_units", "{:d}"),
            ("exact reconstruction", "reconstruction.exact", "{:.1%}"),
            ("character accuracy", "reconstruction.char_accuracy", "{:.1%}"),
            ("mean edit distance", "reconstruction.edit_distance", "{:.2f}"),
            ("samples new (not in training)", "sampling.new", "{:.1%}"),
            ("samples copied from training", "sampling.copied", "{:.1%}"),
            ("duplicate samples", "sampling.duplicates", "{:.1%}"),
            ("distinct-1 / distinct-2", None, None),
            ("classifier accuracy (held-out)", "labels.classifier_accuracy", "{:.1%}"),
            ("samples carrying the asked label", "labels.label_agreement", "{:.1%}"),
            ("seconds", "seconds", "{:.1f}")]
    for label, key, fmt in rows:
        cells = []
        for r in results:
            if key is None:
                d1, d2 = get(r, "sampling.distinct_1"), get(r, "sampling.distinct_2")
                cells.append("" if d1 is None else f"{d1:.3f} / {d2:.3f}")
            else:
                v = get(r, key)
                cells.append("" if v is None else fmt.format(v))
        if any(cells):
            table.add_row(label, *cells)
    return table


@cli.command()
@click.argument("file")
@click.option("--model", "model_path", help="Checkpoint file or run directory [default: the last one trained here].")
@click.option("--baseline", help="Another model (say, one trained with --lm) to evaluate beside it on the same items.")
@click.option("--samples", "-k", type=click.IntRange(1), default=100, show_default=True,
              help="Importance samples per item for the IW-NLL bound (Burda et al. 2016).")
@click.option("--column", help="Text column of a table file.")
@click.option("--unit", type=click.Choice(["line", "word"]), help="Items are lines or words [default: as in training].")
@click.option("--max-len", type=click.IntRange(1), help="Skip items longer than this [default: as in training].")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N items.")
@click.option("--recon-items", type=click.IntRange(0), default=1000, show_default=True,
              help="Items to reconstruct greedily from their posterior means.")
@click.option("--num-samples", type=click.IntRange(0), default=1000, show_default=True,
              help="Samples to draw to judge novelty and diversity.")
@click.option("--train-file", help="Training items, to tell copies from new samples [default: the run's corpus].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures to this JSON file.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the importance samples and samples.")
@click.option("--label", "label_column",
              help="Label column of FILE [default: a conditional model's own]: judge whether samples carry labels.")
@click.option("--per-label", type=click.IntRange(1), default=500, show_default=True,
              help="Samples generated per label to judge a conditional model.")
@click.option("--guidance", type=click.FloatRange(0),
              help="Guidance of a conditional model's samples (see `generate --help`) [default: the model's].")
def evaluate(file, model_path, baseline, samples, column, unit, max_len, limit, recon_items, num_samples, train_file,
             json_path, seed, label_column, per_label, guidance):
    """How well a model models held-out FILE: IW-NLL, ELBO, KL, mutual information, active units,
    reconstruction, and whether its samples are new."""
    import json as _json
    models = [_load(model_path)]
    if baseline:
        models.append(_load(baseline))
    results, names = [], []
    label_column = label_column or next((m.extra.get("label_column") for m in models if m.conditional), None)
    clf = _label_judge(models, label_column, seed) if label_column else None
    for m in models:
        corpus = _read_eval_items(m, file, column, unit, max_len or m.extra.get("max_len"), label_column)
        items, labels = corpus.items, corpus.labels
        if labels is not None:
            known = set(m.labels) if m.conditional else set(clf.labels)
            items, labels = _keep(items, labels, lambda y: y in known)
        if limit:
            items, labels = items[:limit], (labels[:limit] if labels is not None else None)
        if not items:
            raise UserError(f"no items of {file} to evaluate")
        if m.unknown_chars(items):
            err.print(f"[yellow]warning:[/] {len(m.unknown_chars(items))} characters of {_plain(file)} are "
                      f"outside the vocabulary of {_plain(str(m.path))} and count as <unk>")
        train_items = _training_items(m, train_file)
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=err)
        with progress:
            task = progress.add_task(f"IW-NLL (K={samples})", total=len(items))
            r = evaluate_model(m, items, samples, recon_items, num_samples, train_items, seed,
                               on_progress=lambda b: progress.advance(task, b), labels=labels)
        if clf is not None and labels:
            r["labels"] = label_report(m, clf, items, labels, per_label, seed,
                                       guidance=guidance if m.guidable else None)
        r["file"] = file
        results.append(r)
        names.append(("LM " if m.model.config.lm else "VAE ") + Path(str(m.path)).parent.name)
    if len(results) == 2:
        a, b = results
        results[0]["gap_to_baseline"] = a["iw_nats_per_char"] / b["iw_nats_per_char"] - 1
    err.print(_eval_table(results, names))
    for name, r in zip(names, results):
        lab = r.get("labels") or {}
        prior = ", ".join(f"{_plain(y)} {p:.1%}" for y, p in lab.get("class_prior", {}).items())
        if "label_agreement_by_label" in lab:
            per = ", ".join(f"{_plain(y)} {p:.1%}" for y, p in lab["label_agreement_by_label"].items())
            err.print(f"{name}: samples judged to carry the asked label: {per} (class prior: {prior})")
        elif "predicted_label_shares" in lab:
            per = ", ".join(f"{_plain(y)} {p:.1%}" for y, p in lab["predicted_label_shares"].items())
            err.print(f"{name}: labels the judge gives its samples: {per} (class prior: {prior})")
    if len(results) == 2:
        err.print(f"IW-NLL per character: {names[0]} is {100 * results[0]['gap_to_baseline']:+.2f}% against {names[1]}")
    if json_path:
        Path(json_path).write_text(_json.dumps(results if baseline else results[0], indent=2) + "\n")
        err.print(f"wrote {_plain(json_path)}")


# ---------------------------------------------------------------------------- plot

@cli.command()
@click.argument("run", required=False)
@click.option("--data", "data_path", help="Held-out items to map [default: the run's validation items].")
@click.option("--column", help="Text column of a table file.")
@click.option("--label", "label_column", help="Colour the map by this column of a table file (default: by length).")
@click.option("--limit", type=click.IntRange(2), default=3000, show_default=True, help="Items on the map, at most.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Where to write the PNGs [default: RUN].")
def plot(run, data_path, column, label_column, limit, out_dir):
    """Write PNGs of RUN: training curves, and a PCA map of held-out items' posterior means."""
    import json as _json
    try:
        from . import plot as plots
        plots._pyplot()
    except ImportError:
        raise UserError("textvae plot needs matplotlib: pip install 'textvae[plot]'") from None
    from .data import read_corpus, split_valid
    run_dir = _model_path(run)
    run_dir = run_dir if run_dir.is_dir() else run_dir.parent
    if not (run_dir / "metrics.jsonl").is_file():
        raise UserError(f"{run_dir} is not a run directory (no metrics.jsonl)")
    out = Path(out_dir) if out_dir else run_dir
    out.mkdir(parents=True, exist_ok=True)
    written = [plots.training_curves(run_dir, out / "curves.png")]
    m = _load(str(run_dir))
    info = _json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    unit = info.get("unit", "line")
    label_column = label_column or m.extra.get("label_column")
    if data_path:
        corpus = read_corpus(data_path, unit=unit, column=column, label_column=label_column)
        items, labels = corpus.items, corpus.labels
    elif info.get("valid_corpus"):
        corpus = read_corpus(info["valid_corpus"], unit=unit, column=info.get("column"), label_column=label_column)
        items, labels = corpus.items, corpus.labels
    elif info.get("corpus") and (info["corpus"].startswith("hf:") or Path(info["corpus"]).is_file()):
        corpus = read_corpus(info["corpus"], unit=unit, column=info.get("column"), label_column=label_column)
        if label_column:
            _, items, _, labels = split_valid(corpus.items, labels=corpus.labels)
        else:
            items, labels = split_valid(corpus.items)[1], None
    else:
        raise UserError("no held-out items at hand: pass --data FILE")
    if m.conditional:                                   # a conditional model encodes under each item's label
        if not labels:
            raise UserError("this model is conditional: --data must have its label column (--label COLUMN)")
        items, labels = _keep(items, labels, lambda y: y in m.labels)
    items, labels = items[:limit], (labels[:limit] if labels else None)
    if not items:
        raise UserError("no held-out items to map")
    if not m.model.config.lm:
        mu = m.encode(items, labels=labels if m.conditional else None)
        written.append(plots.latent_map(mu, items, out / "latent_map.png", labels=labels,
                                        title=f"posterior means of {len(items):,} held-out items (PCA)"))
    for path in written:
        click.echo(str(path))


# ---------------------------------------------------------------------------- bench

@cli.command()
@click.option("--cell", type=click.Choice(["lstm", "gru"]), default="lstm", show_default=True)
@click.option("--hidden-dim", type=click.IntRange(1), default=256, show_default=True)
@click.option("--encoder-dim", type=click.IntRange(1), help="Encoder width [default: half of --hidden-dim].")
@click.option("--embed-dim", type=click.IntRange(1), default=64, show_default=True)
@click.option("--latent-dim", type=click.IntRange(1), default=32, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--seq-len", type=click.IntRange(2), default=40, show_default=True, help="Characters per item, <eos> included.")
@click.option("--steps", type=click.IntRange(1), default=20, show_default=True, help="Timed steps per repeat.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True, help="Timed repeats; figures are medians.")
@click.option("--generate-n", type=click.IntRange(1), default=10_000, show_default=True, help="Items per generation run.")
@click.option("--no-one-at-a-time", is_flag=True, help="Skip the (slow) one-item-per-step loop.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the figures to this JSON file.")
def bench(cell, hidden_dim, encoder_dim, embed_dim, latent_dim, batch_size, seq_len, steps, repeats, generate_n, no_one_at_a_time,
          device, json_path):
    """Training characters/s, generation items/s and peak memory, beside the bare RNN kernels' figure."""
    import json as _json

    from .bench import BenchConfig, run as run_bench
    from .train import TrainingError
    cfg = BenchConfig(cell=cell, embed_dim=embed_dim, hidden_dim=hidden_dim, encoder_dim=encoder_dim, latent_dim=latent_dim,
                      batch_size=batch_size, seq_len=seq_len, steps=steps, repeats=repeats, generate_n=generate_n,
                      device=device, one_at_a_time=not no_one_at_a_time)
    try:
        with err.status("benchmarking") as status:
            r = run_bench(cfg, progress=lambda m: status.update(f"benchmarking: {m}"))
    except TrainingError as e:
        raise UserError(str(e)) from None
    table = Table(title=f"textvae bench: {cell.upper()} E{embed_dim} H{hidden_dim} "
                        f"encoder {r['encoder_dim']} Z{latent_dim}, batch {batch_size} "
                        f"x {seq_len} chars, {r['device']} ({r.get('gpu') or str(r['threads']) + ' threads'})")
    table.add_column("figure", style="bold")
    table.add_column("median", justify="right")
    table.add_row("bare RNN kernels, forward+backward (chars/s)", f"{r['kernel_chars_per_s']:,.0f}")
    table.add_row("textvae training loop (chars/s)", f"{r['train_chars_per_s']:,.0f}")
    table.add_row("  share of the kernel figure", f"{r['train_vs_kernel']:.0%}")
    if "one_at_a_time_chars_per_s" in r:
        table.add_row("one item per step (chars/s)", f"{r['one_at_a_time_chars_per_s']:,.0f}")
        table.add_row("  batched speed-up", f"{r['speedup_vs_one_at_a_time']:.1f}x")
    table.add_row("generation (items/s)", f"{r['generate_items_per_s']:,.0f}")
    table.add_row("peak memory (MB)", f"{r['peak_memory_mb']:,.0f}")
    Console().print(table)
    if json_path:
        Path(json_path).write_text(_json.dumps(r, indent=2) + "\n")
        err.print(f"wrote {_plain(json_path)}")


def main():
    cli(prog_name="textvae")


if __name__ == "__main__":
    main()
