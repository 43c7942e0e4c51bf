"""`textvae evaluate`, `plot`, `bench` and `serve`: the commands that examine a model rather than decode with it."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ..io.output import write_file
from . import options as opt
from .commands import UserError, _echo, _load, _model_path, _plain, _progress, cli, err

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
        from ..evaluation.report import label_judge
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
    from ..data.prepare import training_items, training_split
    from ..evaluation.report import evaluate_model, items_to_evaluate, label_report
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
    from ..evaluation.report import map_items
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

    from ..training import bench as benchmark
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
        from ..serve.app import bind, loopback, run, url
    except ImportError:
        raise UserError("textvae serve needs its extra: pip install 'textvae[serve]'") from None
    from ..serve import Explorer
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
