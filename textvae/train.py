"""The training loop. It yields what happens as plain dicts and knows nothing of the terminal."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from . import checkpoint
from .data import EncodedItems
from .metrics import evaluate_elbo, posterior_stats, reconstruction_stats
from .model import TextVAE, decoder_inputs
from .objective import KLSchedule, character_dropout, elbo_terms
from .tokenizer import CharTokenizer


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10                # passes over the training items
    max_steps: int | None = None    # stop after this many optimiser steps (overrides epochs)
    max_minutes: float | None = None  # stop (and save) after this much wall-clock time
    batch_size: int = 128           # items per step
    lr: float = 2e-3                # Adam learning rate
    clip: float = 1.0               # gradient-norm clipping
    kl_schedule: str = "linear"     # constant | linear | logistic | cyclical
    kl_warmup: int = 2000           # steps of KL annealing (per cycle for cyclical)
    beta: float = 1.0               # the KL weight the schedule reaches
    free_bits: float = 0.25         # nats per latent dimension below which KL is not penalised
    word_dropout: float = 0.25      # probability of replacing a decoder input character by <unk>
    label_dropout: float = 0.2      # conditional models with a "no label" id: probability of hiding an item's label
    seed: int = 0                   # all randomness: initialisation, batches, dropout, z samples
    device: str = "auto"            # auto | cpu | cuda
    amp: bool = True                # bf16/fp16 autocast on CUDA
    recon_items: int = 1000         # validation items greedily reconstructed each epoch
    patience: int | None = None     # stop after this many epochs without a better validation -ELBO
    log_every: int = 20             # steps between per-step lines in metrics.jsonl
    max_bad_steps: int = 20         # stop after this many non-finite losses in a row

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class TrainingError(Exception):
    """Training cannot go on (for example, the loss kept being NaN)."""


def distributed_rank_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is running."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA GPU is available")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise TrainingError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if device.type != "cuda" or not amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train(model: TextVAE, tokenizer: CharTokenizer, train_data: EncodedItems, valid_data: EncodedItems,
          cfg: TrainConfig, run_dir: Path, info: dict | None = None,
          stop: threading.Event | None = None, resume: dict | None = None) -> Iterator[dict]:
    """Train `model`, writing checkpoints and metrics into `run_dir`; yields one dict per event:

    {"event": "start", ...}, {"event": "step", "step", "epoch", "loss", "recon", "kl", "beta"},
    {"event": "valid", ...validation metrics...}, {"event": "done", "reason", "best", ...}.

    Setting `stop` ends training at the next step boundary and saves a resumable state
    (resume.safetensors) beside the last checkpoint. `resume` (from checkpoint.load_training_state)
    continues such a run where it stopped: same weights, optimiser moments, random state, batch
    order and schedule step, so the result is the same as if it had never stopped.
    """
    run_dir = Path(run_dir)
    rank, world = distributed_rank_world()
    main = rank == 0                        # only the first process writes files
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    amp = autocast_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    torch.manual_seed(cfg.seed)
    model.to(device)
    net = model
    all_reduce = None
    if world > 1:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        all_reduce = dist.all_reduce
        if cfg.batch_size < world:
            raise TrainingError(f"--batch-size {cfg.batch_size} is smaller than the {world} processes")
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = KLSchedule(cfg.kl_schedule, cfg.kl_warmup, cfg.beta)
    free_bits = 0.0 if model.config.lm else cfg.free_bits
    per_epoch = math.ceil(len(train_data) / cfg.batch_size)
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * per_epoch
    info = dict(info or {})
    # where the loop stands: enough to pick it up again exactly
    pos = {"step": 0, "epoch": 1, "batch": 0, "best_nll": None, "best_metrics": {}, "skipped": 0, "elapsed": 0.0,
           "stale": 0}
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        pos.update(resume["state"])
        if resume.get("rng") is not None:
            torch.set_rng_state(resume["rng"])
        if resume.get("rng_cuda") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(resume["rng_cuda"])
    elif main:
        (run_dir / "run.json").write_text(json.dumps({
            "model_config": model.config.to_dict(), "train_config": cfg.to_dict(), **info,
            "train_items": len(train_data), "valid_items": len(valid_data),
        }, indent=2, ensure_ascii=False) + "\n")
    log = open(run_dir / "metrics.jsonl", "a", encoding="utf-8") if main else None
    pin = device.type == "cuda"

    def write_log(record: dict) -> None:
        if main:
            log.write(json.dumps(record) + "\n")
            log.flush()

    def save(name: str, extra: dict) -> None:
        if main:
            checkpoint.save(run_dir / name, model, tokenizer, {"train_config": cfg.to_dict(), **info, **extra})

    def save_resume() -> None:
        pos["elapsed"] = elapsed()
        if main:
            checkpoint.save_training_state(run_dir / checkpoint.RESUME_NAME, model, optimizer, tokenizer, dict(pos),
                                       {"train_config": cfg.to_dict(), **info})

    start_time = time.monotonic() - pos["elapsed"]

    def elapsed() -> float:
        return time.monotonic() - start_time

    bad_steps = 0
    reason = "finished"

    def agree(*flags: bool) -> list[bool]:
        """Every process takes the same decision: true for all if true for any."""
        if world == 1:
            return list(flags)
        t = torch.tensor([float(f) for f in flags], device=device)
        all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    yield {"event": "start", "total_steps": total_steps, "steps_per_epoch": per_epoch, "device": str(device),
           "parameters": sum(p.numel() for p in model.parameters()), "amp": str(amp) if amp else None,
           "resumed_at": pos["step"] if resume is not None else None, "world_size": world}
    try:
        while pos["step"] < total_steps and reason == "finished":
            model.train()
            chars_seen, epoch_start = 0, time.monotonic()
            batches = train_data.batch_indices(cfg.batch_size, shuffle=True, seed=cfg.seed * 100_003 + pos["epoch"])
            while pos["batch"] < len(batches):
                if pos["step"] >= total_steps:
                    break
                stopping, out_of_time = agree(stop is not None and stop.is_set(),
                                              cfg.max_minutes is not None and elapsed() > cfg.max_minutes * 60)
                if stopping:
                    reason = "interrupted"
                    break
                if out_of_time:
                    reason = "time limit"
                    break
                # Every process builds the whole batch and draws its randomness (character dropout, the
                # reparameterisation noise) from the same generator, then keeps its own rows: the result
                # does not depend on how many processes share the work.
                index = batches[pos["batch"]]
                pos["batch"] += 1
                tokens, lengths = train_data.batch(index)
                batch_chars = int(lengths.sum())
                inputs = character_dropout(decoder_inputs(tokens), cfg.word_dropout)
                eps = torch.randn(len(index), model.config.latent_dim)
                labels = train_data.labels_of(index)
                if labels is not None and model.config.null_label and cfg.label_dropout > 0:
                    hide = torch.rand(len(index)) < cfg.label_dropout
                    labels = labels.masked_fill(hide, model.config.num_labels)
                if world > 1:
                    rows = torch.from_numpy(np.array_split(np.arange(len(index)), world)[rank])
                    tokens, lengths, inputs, eps = tokens[rows], lengths[rows], inputs[rows], eps[rows]
                    labels = None if labels is None else labels[rows]
                if labels is not None:
                    labels = labels.to(device, non_blocking=True)
                if pin:
                    tokens, lengths, inputs = tokens.pin_memory(), lengths.pin_memory(), inputs.pin_memory()
                tokens = tokens.to(device, non_blocking=True)
                lengths = lengths.to(device, non_blocking=True)
                inputs = inputs.to(device, non_blocking=True)
                eps = eps.to(device, non_blocking=True)
                beta = schedule(pos["step"])
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    out = net(tokens, lengths, inputs=inputs, eps=eps, labels=labels)
                    terms = elbo_terms(out.logits, tokens, out.mu, out.logvar, beta, free_bits,
                                       total_items=len(index), all_reduce=all_reduce)
                loss = terms["loss"] * world          # DDP averages gradients; the sum over processes is wanted
                optimizer.zero_grad(set_to_none=True)
                finite = bool(torch.isfinite(terms["objective"]))
                if finite:
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)
                    else:
                        loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                    finite = bool(torch.isfinite(grad_norm)) or scaler is not None
                if not finite:                      # a NaN/inf loss or gradient: skip the update, keep the weights
                    bad_steps += 1
                    pos["skipped"] += 1
                    optimizer.zero_grad(set_to_none=True)
                    write_log({"kind": "skipped", "step": pos["step"], "epoch": pos["epoch"]})
                    if bad_steps >= cfg.max_bad_steps:
                        raise TrainingError(f"the loss or its gradient was not finite for {bad_steps} steps in a "
                                            "row; the weights were kept; try a lower --lr")
                    continue
                bad_steps = 0
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                pos["step"] += 1
                step = pos["step"]
                if step % 200 == 0:
                    train_data.release_pages()
                chars_seen += batch_chars
                event = {"event": "step", "step": step, "epoch": pos["epoch"], "loss": float(terms["objective"]),
                         "recon": float(terms["recon"].detach()), "kl": float(terms["kl"].detach()), "beta": beta,
                         "chars_per_s": chars_seen / max(time.monotonic() - epoch_start, 1e-9)}
                if step % cfg.log_every == 0 or step == 1:
                    write_log({"kind": "step", **{k: v for k, v in event.items() if k != "event"},
                               "grad_norm": float(grad_norm), "time": elapsed()})
                yield event
            if reason == "interrupted":
                # no validation: save at once, so that resuming gives the uninterrupted run's weights
                save("last.safetensors", {"epoch": pos["epoch"], "step": pos["step"], "interrupted": True})
                save_resume()
                break
            # -- validation at the end of every epoch (or when the step or time budget runs out) --------
            metrics = evaluate_elbo(model, valid_data, seed=cfg.seed, autocast_dtype=amp)
            metrics.update(posterior_stats(model, valid_data, seed=cfg.seed))
            if cfg.recon_items and not model.config.lm:
                metrics.update(reconstruction_stats(model, valid_data, limit=cfg.recon_items))
            metrics.update({"epoch": pos["epoch"], "step": pos["step"], "time": elapsed(),
                            "skipped_steps": pos["skipped"]})
            improved = pos["best_nll"] is None or metrics["nll_elbo"] < pos["best_nll"]
            extra = {"epoch": pos["epoch"], "step": pos["step"], "valid": metrics}
            save("last.safetensors", extra)
            if improved:
                pos["best_nll"], pos["best_metrics"] = metrics["nll_elbo"], metrics
                pos["stale"] = 0
                save("best.safetensors", extra)
            else:
                pos["stale"] = pos.get("stale", 0) + 1
                if cfg.patience is not None and pos["stale"] >= cfg.patience:
                    reason = "early stop"
            if pos["batch"] >= len(batches):
                pos["epoch"] += 1
                pos["batch"] = 0
            save_resume()
            write_log({"kind": "epoch", **metrics, "best": improved})
            yield {"event": "valid", **metrics, "best": improved}
    finally:
        if log is not None:
            log.close()
    yield {"event": "done", "reason": reason, "step": pos["step"], "epoch": pos["epoch"], "best": pos["best_metrics"],
           "time": elapsed(), "run_dir": str(run_dir)}
