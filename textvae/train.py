"""The training loop. It yields what happens as plain dicts and knows nothing of the terminal."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from . import checkpoint, distributed
from .checkpoint import RunInfo
from .config import Saved
from .data import EncodedItems
from .metrics import evaluate_elbo, posterior_stats, reconstruction_stats
from .model import TextVAE, decoder_inputs
from .objective import KLSchedule, character_dropout, elbo_terms
from .tokenizer import CharTokenizer


@dataclass(frozen=True)
class TrainConfig(Saved):
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



class TrainingError(Exception):
    """Training cannot go on (for example, the loss kept being NaN)."""


DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA GPU is available")
    if name not in DEVICES and not name.startswith("cuda:"):
        raise TrainingError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if device.type != "cuda" or not amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class Trainer:
    """One training run, in named steps: `step` (one optimiser update), `validate` (the end-of-epoch
    figures), `save` / `save_resume` (checkpoints), and `events`, the loop that ties them together.

    Under torchrun every process builds the whole batch and draws its randomness (character dropout, the
    reparameterisation noise) from the same generator, then keeps its own rows: the result does not
    depend on how many processes share the work. Only the first process writes files."""

    def __init__(self, model: TextVAE, tokenizer: CharTokenizer, train_data: EncodedItems, valid_data: EncodedItems,
                 cfg: TrainConfig, run_dir: Path, run: RunInfo | None = None, resume: dict | None = None):
        self.run_dir = Path(run_dir)
        self.rank, self.world = distributed.rank_world()
        self.main = self.rank == 0
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = distributed.local_device(pick_device(cfg.device))
        self.amp = autocast_dtype(self.device, cfg.amp)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        torch.manual_seed(cfg.seed)
        self.model, self.tokenizer, self.cfg, self.run = model.to(self.device), tokenizer, cfg, run or RunInfo()
        self.train_data, self.valid_data = train_data, valid_data
        self.net, self.all_reduce = model, None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            self.net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.all_reduce = torch.distributed.all_reduce
            if cfg.batch_size < self.world:
                raise TrainingError(f"--batch-size {cfg.batch_size} is smaller than the {self.world} processes")
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self.schedule = KLSchedule(cfg.kl_schedule, cfg.kl_warmup, cfg.beta)
        self.free_bits = 0.0 if model.config.lm else cfg.free_bits
        self.per_epoch = math.ceil(len(train_data) / cfg.batch_size)
        self.total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * self.per_epoch
        # where the loop stands: enough to pick it up again exactly
        self.pos = {"step": 0, "epoch": 1, "batch": 0, "best_nll": None, "best_metrics": {}, "skipped": 0,
                    "elapsed": 0.0, "stale": 0}
        self.resumed = resume is not None
        if resume is not None:
            self.optimizer.load_state_dict(resume["optimizer"])
            self.pos.update(resume["state"])
            if resume.get("rng") is not None:
                torch.set_rng_state(resume["rng"])
            if resume.get("rng_cuda") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(resume["rng_cuda"])
        elif self.main:
            (self.run_dir / "run.json").write_text(json.dumps({
                "model_config": model.config.to_dict(), "train_config": cfg.to_dict(), "run": self.run.to_dict(),
                "train_items": len(train_data), "valid_items": len(valid_data),
            }, indent=2, ensure_ascii=False) + "\n")
        self.start_time = time.monotonic() - self.pos["elapsed"]
        self.bad_steps = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.start_time

    def log(self, record: dict) -> None:
        if self.main:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def save(self, name: str, progress: dict) -> None:
        if self.main:
            checkpoint.save(self.run_dir / name, self.model, self.tokenizer, self.run, self.cfg.to_dict(), progress)

    def save_resume(self) -> None:
        self.pos["elapsed"] = self.elapsed()
        if self.main:
            checkpoint.save_training_state(self.run_dir / checkpoint.RESUME_NAME, self.model, self.optimizer,
                                           self.tokenizer, dict(self.pos), self.run, self.cfg.to_dict())

    def _batch(self, index: np.ndarray):
        """The batch of items `index` on the device: tokens, lengths, corrupted decoder inputs, noise, labels."""
        cfg, model, device = self.cfg, self.model, self.device
        tokens, lengths = self.train_data.batch(index)
        inputs = character_dropout(decoder_inputs(tokens), cfg.word_dropout)
        eps = torch.randn(len(index), model.config.latent_dim)
        labels = self.train_data.labels_of(index)
        if labels is not None and model.config.null_label and cfg.label_dropout > 0:
            hide = torch.rand(len(index)) < cfg.label_dropout
            labels = labels.masked_fill(hide, model.config.num_labels)
        if self.world > 1:
            rows = torch.from_numpy(np.array_split(np.arange(len(index)), self.world)[self.rank])
            tokens, lengths, inputs, eps = tokens[rows], lengths[rows], inputs[rows], eps[rows]
            labels = None if labels is None else labels[rows]
        if labels is not None:
            labels = labels.to(device, non_blocking=True)
        if device.type == "cuda":
            tokens, lengths, inputs = tokens.pin_memory(), lengths.pin_memory(), inputs.pin_memory()
        return (tokens.to(device, non_blocking=True), lengths.to(device, non_blocking=True),
                inputs.to(device, non_blocking=True), eps.to(device, non_blocking=True), labels)

    def step(self, index: np.ndarray) -> dict | None:
        """One optimiser update on the items `index`: the step's figures, or None when a non-finite loss or
        gradient made it skip the update (the weights are kept)."""
        cfg, pos = self.cfg, self.pos
        tokens, lengths, inputs, eps, labels = self._batch(index)
        beta = self.schedule(pos["step"])
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.net(tokens, lengths, inputs=inputs, eps=eps, labels=labels)
            terms = elbo_terms(out.logits, tokens, out.mu, out.logvar, beta, self.free_bits,
                               total_items=len(index), all_reduce=self.all_reduce)
        loss = terms["loss"] * self.world          # DDP averages gradients; the sum over processes is wanted
        self.optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(terms["objective"]))
        if finite:
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
            finite = bool(torch.isfinite(grad_norm)) or self.scaler is not None
        if not finite:
            self.bad_steps += 1
            pos["skipped"] += 1
            self.optimizer.zero_grad(set_to_none=True)
            self.log({"kind": "skipped", "step": pos["step"], "epoch": pos["epoch"]})
            if self.bad_steps >= cfg.max_bad_steps:
                raise TrainingError(f"the loss or its gradient was not finite for {self.bad_steps} steps in a "
                                    "row; the weights were kept; try a lower --lr")
            return None
        self.bad_steps = 0
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        pos["step"] += 1
        return {"step": pos["step"], "epoch": pos["epoch"], "loss": float(terms["objective"]),
                "recon": float(terms["recon"].detach()), "kl": float(terms["kl"].detach()), "beta": beta,
                "grad_norm": float(grad_norm)}

    def validate(self) -> dict:
        """Validation figures, and the best and last checkpoints saved; early stopping counted."""
        cfg, pos, model = self.cfg, self.pos, self.model
        metrics = evaluate_elbo(model, self.valid_data, seed=cfg.seed, autocast_dtype=self.amp)
        metrics.update(posterior_stats(model, self.valid_data, seed=cfg.seed))
        if cfg.recon_items and not model.config.lm:
            metrics.update(reconstruction_stats(model, self.valid_data, limit=cfg.recon_items))
        metrics.update({"epoch": pos["epoch"], "step": pos["step"], "time": self.elapsed(),
                        "skipped_steps": pos["skipped"]})
        improved = pos["best_nll"] is None or metrics["nll_elbo"] < pos["best_nll"]
        progress = {"epoch": pos["epoch"], "step": pos["step"], "valid": metrics}
        self.save("last.safetensors", progress)
        if improved:
            pos["best_nll"], pos["best_metrics"] = metrics["nll_elbo"], metrics
            pos["stale"] = 0
            self.save("best.safetensors", progress)
        else:
            pos["stale"] = pos.get("stale", 0) + 1
        return {**metrics, "best": improved}

    def events(self, stop: threading.Event | None = None) -> Iterator[dict]:
        cfg, pos = self.cfg, self.pos
        reason = "finished"
        yield {"event": "start", "total_steps": self.total_steps, "steps_per_epoch": self.per_epoch,
               "device": str(self.device), "parameters": sum(p.numel() for p in self.model.parameters()),
               "amp": str(self.amp) if self.amp else None, "resumed_at": pos["step"] if self.resumed else None,
               "world_size": self.world}
        while pos["step"] < self.total_steps and reason == "finished":
            self.model.train()
            chars_seen, epoch_start = 0, time.monotonic()
            batches = self.train_data.batch_indices(cfg.batch_size, shuffle=True, seed=cfg.seed * 100_003 + pos["epoch"])
            while pos["batch"] < len(batches) and pos["step"] < self.total_steps:
                stopping, out_of_time = distributed.agree(
                    self.device, stop is not None and stop.is_set(),
                    cfg.max_minutes is not None and self.elapsed() > cfg.max_minutes * 60)
                if stopping or out_of_time:
                    reason = "interrupted" if stopping else "time limit"
                    break
                index = batches[pos["batch"]]
                pos["batch"] += 1
                figures = self.step(index)
                if figures is None:
                    continue
                if pos["step"] % 200 == 0:
                    self.train_data.release_pages()
                chars_seen += int(self.train_data.lengths[index].sum()) + len(index)
                figures["chars_per_s"] = chars_seen / max(time.monotonic() - epoch_start, 1e-9)
                if pos["step"] % cfg.log_every == 0 or pos["step"] == 1:
                    self.log({"kind": "step", **figures, "time": self.elapsed()})
                yield {"event": "step", **{k: v for k, v in figures.items() if k != "grad_norm"}}
            if reason == "interrupted":
                # no validation: save at once, so that resuming gives the uninterrupted run's weights
                self.save("last.safetensors", {"epoch": pos["epoch"], "step": pos["step"], "interrupted": True})
                self.save_resume()
                break
            metrics = self.validate()
            if not metrics["best"] and cfg.patience is not None and pos["stale"] >= cfg.patience:
                reason = "early stop"
            if pos["batch"] >= len(batches):
                pos["epoch"] += 1
                pos["batch"] = 0
            self.save_resume()
            self.log({"kind": "epoch", **metrics})
            yield {"event": "valid", **metrics}
        yield {"event": "done", "reason": reason, "step": pos["step"], "epoch": pos["epoch"],
               "best": pos["best_metrics"], "time": self.elapsed(), "run_dir": str(self.run_dir)}


def train(model: TextVAE, tokenizer: CharTokenizer, train_data: EncodedItems, valid_data: EncodedItems,
          cfg: TrainConfig, run_dir: Path, run: RunInfo | None = None,
          stop: threading.Event | None = None, resume: dict | None = None) -> Iterator[dict]:
    """Train `model`, writing checkpoints and metrics into `run_dir`; yields one dict per event:

    {"event": "start", ...}, {"event": "step", "step", "epoch", "loss", "recon", "kl", "beta"},
    {"event": "valid", ...validation metrics...}, {"event": "done", "reason", "best", ...}.

    Setting `stop` ends training at the next step boundary and saves a resumable state
    (resume.safetensors) beside the last checkpoint. `resume` (from checkpoint.load_training_state)
    continues such a run where it stopped: same weights, optimiser moments, random state, batch
    order and schedule step, so the result is the same as if it had never stopped.
    """
    yield from Trainer(model, tokenizer, train_data, valid_data, cfg, run_dir, run, resume).events(stop)
