"""The training loop. It yields what happens as plain dicts and knows nothing of the terminal."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..data.items import EncodedItems
from ..data.tokenizer import CharTokenizer
from ..evaluation.metrics import evaluate_elbo, posterior_stats, reconstruction_stats
from ..io import checkpoint
from ..io.checkpoint import RunInfo
from ..model.objective import KLSchedule, character_dropout, elbo_terms, planned
from ..model.vae import TextVAE, decoder_inputs
from ..settings import (
    DEFAULT_LR,
    DEFAULT_WORD_DROPOUT,
    DEVICES,
    GPU_BATCH,
    LEGACY_BATCH,
    LEGACY_LR,
    LEGACY_WORD_DROPOUT,
    SMALL_CORPUS,
    TINY_CORPUS,
    TrainConfig,
    TrainingError,
)
from . import distributed
from .measure import Measuring
from .schedule import DEFAULT_PATIENCE, LR_SCHEDULES, Plan, learning_rate, refit


def default_batch_size(items: int, device: torch.device) -> int:
    """Items per step when none is asked for: on a CPU, small corpora learn more from more (smaller) steps;
    a GPU runs larger batches at little extra cost per step."""
    if device.type == "cuda":
        return GPU_BATCH
    return 32 if items < TINY_CORPUS else 64 if items < SMALL_CORPUS else 128


def resolve_defaults(cfg: TrainConfig, items: int, device: torch.device) -> TrainConfig:
    """The settings left to the defaults (None), made concrete: the earlier ones under the earlier schedule
    (--lr-schedule constant), else those measured for planned schedules (docs/RESULTS.md)."""
    legacy = cfg.lr_schedule == "constant"
    chosen = {"batch_size": LEGACY_BATCH if legacy else default_batch_size(items, device),
              "lr": LEGACY_LR if legacy else DEFAULT_LR,
              "word_dropout": LEGACY_WORD_DROPOUT if legacy else DEFAULT_WORD_DROPOUT}
    return dataclasses.replace(cfg, **{k: v for k, v in chosen.items() if getattr(cfg, k) is None})


FEWER_THREADS_GAIN = 0.9  # a run takes one CPU thread when the probe measured a step at least 10% faster on it
RECON_EXTRA = 8        # validation reconstructs items greedily to at most this many characters past their end
VALID_CHARS = 100_000  # a planned run validates on the first validation items holding this many characters
SMOOTHING = 0.5        # early stopping watches an exponential average of the validation -ELBO with this weight


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICES and not name.startswith("cuda:"):
        raise TrainingError(f"unknown device {name!r}: use auto, cpu or cuda")
    if name.startswith("cuda"):
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not gpus:
            raise TrainingError(f"--device {name} was asked for, but no CUDA GPU is available")
        index = name.partition(":")[2]
        if index and not (index.isdigit() and int(index) < gpus):
            raise TrainingError(f"--device {name}: this machine's GPUs are cuda:0 to cuda:{gpus - 1}")
    return torch.device(name)


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if device.type != "cuda" or not amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class Trainer(Measuring):
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
        cfg = resolve_defaults(cfg, len(train_data), self.device)
        if cfg.lr_schedule not in LR_SCHEDULES:
            raise TrainingError(f"unknown learning-rate schedule {cfg.lr_schedule!r}: use {', '.join(LR_SCHEDULES)}")
        torch.manual_seed(cfg.seed)
        self.model, self.tokenizer, self.cfg, self.run = model.to(self.device), tokenizer, cfg, run or RunInfo()
        self.train_data, self.valid_data, self.valid_of = train_data, valid_data, len(valid_data)
        self.legacy = cfg.lr_schedule == "constant"
        if not self.legacy:                    # validations in a planned budget: a bounded share of its time
            self.valid_data = valid_data.head(VALID_CHARS)
        self.net, self.all_reduce = model, None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            self.net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.all_reduce = torch.distributed.all_reduce
            if cfg.batch_size < self.world:
                raise TrainingError(f"--batch-size {cfg.batch_size} is smaller than the {self.world} processes")
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self.free_bits = 0.0 if model.config.lm else cfg.free_bits
        self.per_epoch = math.ceil(len(train_data) / cfg.batch_size)
        # where the loop stands: enough to pick it up again exactly
        self.pos = {"step": 0, "epoch": 1, "batch": 0, "best_nll": None, "best_metrics": {}, "skipped": 0,
                    "elapsed": 0.0, "stale": 0, "smoothed": None, "best_smoothed": None, "plan": None}
        self.resumed = resume is not None
        self.start_time = created = time.monotonic()
        if resume is not None:
            self.optimizer.load_state_dict(resume["optimizer"])
            self.pos.update(resume["state"])
        budget = [cfg.epochs, cfg.max_steps, cfg.max_minutes]
        self.threads_before = torch.get_num_threads()
        if self.pos["plan"] is not None and self.pos["plan"]["budget"] == budget:
            self.plan = Plan(**{k: v for k, v in self.pos["plan"].items() if k != "budget"})
        else:                                  # a new run, or a resumed one given a new budget
            self.plan = self._plan(FEWER_THREADS_GAIN, RECON_EXTRA)
            self.pos["plan"] = {**self.plan.to_dict(), "budget": budget}
        self.total_steps = self.plan.total_steps
        if self.plan.threads:
            torch.set_num_threads(self.plan.threads)
        self.schedule = self._kl_schedule()
        if resume is not None:
            self._restore_random_state(resume)
        elif self.main:
            self._write_run_json(len(train_data), len(valid_data))
        self.start_time = time.monotonic() - self.pos["elapsed"]
        self.setup_s = 0.0 if self.resumed else self.start_time - created    # the budget's measurement
        self.bad_steps = 0
        self.board = self._board() if cfg.tensorboard and self.main else None

    def _restore_random_state(self, resume: dict) -> None:
        if resume.get("rng") is not None:
            torch.set_rng_state(resume["rng"])
        if resume.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(resume["rng_cuda"])

    def _write_run_json(self, train_items: int, valid_items: int) -> None:
        (self.run_dir / "run.json").write_text(json.dumps({
            "model_config": self.model.config.to_dict(), "train_config": self.cfg.to_dict(), "run": self.run.to_dict(),
            "plan": self.plan.to_dict(), "train_items": train_items, "valid_items": valid_items,
            "validated_items": len(self.valid_data),
        }, indent=2, ensure_ascii=False) + "\n")

    def _kl_schedule(self) -> KLSchedule:
        """β by step: as asked under the earlier schedule, else fitted to the budget's steps."""
        schedule = KLSchedule(self.cfg.kl_schedule, self.cfg.kl_warmup, self.cfg.beta)
        return schedule if self.legacy else planned(schedule, self.total_steps)

    def _board(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrainingError("--tensorboard needs the tensorboard package: pip install 'textvae[tensorboard]'") from None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    @property
    def patience(self) -> int:
        """Validations without a better smoothed objective that stop a run: --patience, 0 for never; by default
        DEFAULT_PATIENCE under a planned budget (counted once the rate has halved), never under the earlier one."""
        if self.cfg.patience is not None:
            return self.cfg.patience
        return 0 if self.legacy else DEFAULT_PATIENCE

    def elapsed(self) -> float:
        return time.monotonic() - self.start_time

    def log(self, record: dict) -> None:
        """A line of metrics.jsonl (the record of the run), and the same figures to TensorBoard if asked."""
        if not self.main:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.board is not None and record["kind"] in ("step", "epoch"):
            group = "train" if record["kind"] == "step" else "valid"
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "kind"):
                    self.board.add_scalar(f"{group}/{key}", value, record["step"])
            if group == "valid" and not self.model.config.lm and not self.model.config.num_labels:
                self.board.add_text("samples", "\n\n".join(self._samples()), record["step"])
            self.board.flush()

    @torch.no_grad()
    def _samples(self, n: int = 5) -> list[str]:
        """A few items decoded from prior codes (fixed ones, so that they can be followed from one validation to
        the next), for TensorBoard."""
        from ..decoding.loop import decode_codes
        z = torch.randn((n, self.model.config.latent_dim), generator=torch.Generator().manual_seed(0))
        longest = self.run.longest_item or 64
        ids = decode_codes(self.model, z.to(self.device), max_len=longest + 10)
        self.model.train()
        return [self.tokenizer.decode(row) for row in ids.tolist()]

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

    def step(self, index: np.ndarray, count: bool = True) -> dict | None:
        """One optimiser update on the items `index`: the step's figures, or None when a non-finite loss or
        gradient made it skip the update (the weights are kept). `count=False`: a timing step, not recorded."""
        cfg, pos = self.cfg, self.pos
        tokens, lengths, inputs, eps, labels = self._batch(index)
        beta = self.schedule(pos["step"]) if count else 1.0
        lr = self._learning_rate() if count else cfg.lr
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            if self.model.config.word_prior:
                out = self.net(tokens, lengths, inputs=inputs, eps=eps, labels=labels, prior_weight=beta,
                               prior_dropout=cfg.prior_dropout)
            else:
                out = self.net(tokens, lengths, inputs=inputs, eps=eps, labels=labels)
            terms = elbo_terms(out.logits, tokens, out.mu, out.logvar, beta, self.free_bits,
                               total_items=len(index), all_reduce=self.all_reduce, log_q=out.log_q,
                               log_p=out.log_p, global_dim=self.model.config.global_dim)
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
        if not finite and not count:
            return None
        if not finite:
            self._skip()
            return None
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if not count:
            return None
        self.bad_steps = 0
        pos["step"] += 1
        figures = {"step": pos["step"], "epoch": pos["epoch"], "loss": float(terms["objective"]),
                   "recon": float(terms["recon"].detach()), "kl": float(terms["kl"].detach()), "beta": beta,
                   "grad_norm": float(grad_norm)}
        if "prior_nll" in terms:
            figures["prior_nll"] = float(terms["prior_nll"])
            figures["kl_global"] = float(terms["kl_global"])
        if not self.legacy:
            figures["lr"] = lr
        return figures

    def _learning_rate(self) -> float:
        """The learning rate of the step to come, set on the optimiser under a planned schedule."""
        cfg = self.cfg
        if self.legacy:
            return cfg.lr
        lr = learning_rate(cfg.lr_schedule, cfg.lr, self.pos["step"], self.total_steps, self.plan.lr_warmup,
                           cfg.lr_floor)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _skip(self) -> None:
        """A step whose loss or gradient was not finite: no update; after `max_bad_steps` of them in a row, an error."""
        self.bad_steps += 1
        self.pos["skipped"] += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.log({"kind": "skipped", "step": self.pos["step"], "epoch": self.pos["epoch"]})
        if self.bad_steps >= self.cfg.max_bad_steps:
            raise TrainingError(f"the loss or its gradient was not finite for {self.bad_steps} steps in a "
                                "row; the weights were kept; try a lower --lr")

    @torch.no_grad()
    def _fit_prior(self, items: int = 2000) -> None:
        """Fit a model's generating Gaussian to the posteriors of (up to `items`) training items."""
        data, model = self.train_data, self.model
        index = np.random.default_rng(self.cfg.seed).permutation(len(data))[:items]
        mus, logvars, words = [], [], []
        model.eval()
        for start in range(0, len(index), 256):
            part = np.sort(index[start:start + 256])
            tokens, lengths = data.batch(part)
            labels = data.labels_of(part)
            mu, logvar = model.encode(tokens.to(self.device), lengths.to(self.device),
                                      None if labels is None else labels.to(self.device))
            mus.append(mu)
            logvars.append(logvar)
            words.append((tokens == model.config.slot_break).sum(dim=1) + 1)
        model.fit_prior(torch.cat(mus), torch.cat(logvars))
        if hasattr(model, "slot_bank"):
            model.fit_slot_prior(torch.cat(mus), torch.cat(words), seed=self.cfg.seed)

    def _validation_figures(self, timing: dict | None = None) -> dict:
        cfg, model = self.cfg, self.model
        if hasattr(model, "prior_mean"):
            self._fit_prior()
        metrics = evaluate_elbo(model, self.valid_data, seed=cfg.seed, autocast_dtype=self.amp,
                                free_bits=self.free_bits)
        metrics.update(posterior_stats(model, self.valid_data, seed=cfg.seed))
        if cfg.recon_items and not model.config.lm:
            t0 = time.perf_counter()
            metrics.update(reconstruction_stats(model, self.valid_data, limit=cfg.recon_items, max_extra=RECON_EXTRA))
            if timing is not None:
                timing["recon"] = time.perf_counter() - t0
        return metrics

    def _refit(self, step_s: float, valid_s: float) -> dict:
        """A budget in time, refitted after the first validation to the pace measured on the run itself."""
        pos, before = self.pos, self.total_steps
        # every process refits with the first one's figures
        step_s, valid_s, elapsed = distributed.from_first(self.device, step_s, valid_s, self.setup_s + self.elapsed())
        self.plan = refit(self.plan, pos["step"], elapsed, step_s, valid_s)
        self.total_steps = self.plan.total_steps
        self.schedule = self._kl_schedule()
        pos["plan"] = {**self.plan.to_dict(), "budget": pos["plan"]["budget"]}
        pos["refitted"] = True
        self.log({"kind": "refit", "step": pos["step"], "total_steps": self.total_steps, "step_s": step_s,
                  "valid_s": valid_s, "estimate_s": self.plan.estimate_s, "time": self.elapsed()})
        return {"event": "refit", "step": pos["step"], "total_steps": self.total_steps,
                "estimate_s": self.plan.estimate_s, "step_s": step_s, "valid_s": valid_s, "before": before}

    def validate(self) -> dict:
        """Validation figures, and the best and last checkpoints saved; early stopping counted."""
        pos = self.pos
        metrics = self._validation_figures()
        metrics.update({"epoch": pos["epoch"], "step": pos["step"], "time": self.elapsed(),
                        "skipped_steps": pos["skipped"]})
        # the best checkpoint: the lowest -ELBO under the earlier schedule; under a planned one, the lowest
        # training objective (with free bits, a high-rate code is what was asked for, not a lower -ELBO)
        x = metrics["nll_elbo" if self.legacy else "objective"]
        improved = pos["best_nll"] is None or x < pos["best_nll"]
        progress = {"epoch": pos["epoch"], "step": pos["step"], "valid": metrics}
        self.save("last.safetensors", progress)
        if improved:
            pos["best_nll"], pos["best_metrics"] = x, metrics
            self.save("best.safetensors", progress)
        if self.legacy:                        # the earlier rule: epochs in a row without a better -ELBO
            pos["stale"] = 0 if improved else pos.get("stale", 0) + 1
        else:                                  # a smoothed figure, counted once the learning rate has halved
            pos["smoothed"] = x if pos["smoothed"] is None else SMOOTHING * pos["smoothed"] + (1 - SMOOTHING) * x
            if pos["best_smoothed"] is None or pos["smoothed"] < pos["best_smoothed"]:
                pos["best_smoothed"], pos["stale"] = pos["smoothed"], 0
            elif pos["step"] >= self.plan.lr_warmup + (self.total_steps - self.plan.lr_warmup) / 2:
                pos["stale"] += 1
        return {**metrics, "best": improved}

    def events(self, stop: threading.Event | None = None) -> Iterator[dict]:
        try:
            yield from self._events(stop)
        finally:
            torch.set_num_threads(self.threads_before)
            if self.board is not None:
                self.board.close()

    def _events(self, stop: threading.Event | None) -> Iterator[dict]:
        cfg, pos = self.cfg, self.pos
        reason = "finished"
        loop_start, first_step = self.elapsed(), pos["step"]
        yield {"event": "start", "total_steps": self.total_steps, "steps_per_epoch": self.per_epoch,
               "device": str(self.device), "parameters": sum(p.numel() for p in self.model.parameters()),
               "amp": str(self.amp) if self.amp else None, "resumed_at": pos["step"] if self.resumed else None,
               "world_size": self.world, "plan": self.plan.to_dict(), "batch_size": cfg.batch_size,
               "valid_items": len(self.valid_data), "valid_of": self.valid_of}
        while pos["step"] < self.total_steps and reason == "finished":
            self.model.train()
            chars_seen, epoch_start = 0, time.monotonic()
            batches = self.train_data.batch_indices(cfg.batch_size, shuffle=True, seed=cfg.seed * 100_003 + pos["epoch"])
            due = False
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
                if not self.legacy and pos["step"] % self.plan.valid_every == 0:
                    due = True
                    break
            if reason == "interrupted":
                # no validation: save at once, so that resuming gives the uninterrupted run's weights
                self.save("last.safetensors", {"epoch": pos["epoch"], "step": pos["step"], "interrupted": True})
                self.save_resume()
                break
            if not (self.legacy or due or reason != "finished" or pos["step"] >= self.total_steps):
                pos["epoch"] += 1                  # an epoch ended between two planned validations
                pos["batch"] = 0
                continue
            valid_start = self.elapsed()
            metrics = self.validate()
            if self.plan.seconds is not None and not pos.get("refitted") and pos["step"] < self.total_steps:
                step_s = (valid_start - loop_start) / max(pos["step"] - first_step, 1)
                yield self._refit(step_s, self.elapsed() - valid_start)
            if not metrics["best"] and self.patience and pos["stale"] >= self.patience:
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
