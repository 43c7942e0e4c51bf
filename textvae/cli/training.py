"""`textvae train`: a run started or resumed, its choices announced, its progress drawn, and its end summarised."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click
from rich.progress import TextColumn

from ..settings import DataConfig, TrainConfig
from ..training import distributed
from . import options as opt
from .commands import UserError, _given, _plain, _progress, cli, err

# ---------------------------------------------------------------------------- train

@cli.command()
@click.argument("corpus", required=False)
@opt.options(*opt.TRAIN_OPTIONS)
@click.pass_context
def train(ctx, corpus, resume_run, out, decoder_from, force, **opts):
    """Train a VAE on CORPUS: a UTF-8 text file (one item per line), a CSV/TSV/JSONL/Parquet file with
    --column, a folder holding train.txt (and valid.txt), or hf:NAME[:CONFIG] for a Hugging Face dataset.
    Ctrl-C saves a resumable state; `textvae train --resume RUN` continues it."""
    from ..training import run as runs
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
    from ..training.run import decoder_settings, decoder_source
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
    from ..training.run import stop_on_signals

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
