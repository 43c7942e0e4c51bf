"""The budget's measurement, as a part of `trainer.Trainer`: how long a training step and a validation take, timed
on a copy of the model before the first step, and how many CPU threads a step runs fastest on."""

from __future__ import annotations

import copy
import dataclasses
import os
import time

import numpy as np
import torch

from . import distributed
from .schedule import Plan, plan


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Measuring:
    """The planning half of `Trainer` (a mixin: it times the trainer's own `step` and validation)."""

    def _plan(self, fewer_threads_gain: float, recon_extra: int) -> Plan:
        """The budget; the speed of a step and of a validation is measured first when the budget is in
        minutes or left to the default (see `_measure`)."""
        cfg = self.cfg
        timed = not self.legacy and cfg.max_steps is None and cfg.epochs is None
        step_s = valid_s = None
        threads = None
        if timed:
            # every process plans with the first one's figures
            step_s, valid_s, threads = self._measure(fewer_threads_gain, recon_extra)
            step_s, valid_s = distributed.from_first(self.device, step_s, valid_s)
        chosen = plan(self.per_epoch, self.device.type, cfg.lr_schedule, cfg.epochs, cfg.max_steps, cfg.max_minutes,
                      cfg.lr_warmup, step_s, valid_s)
        return dataclasses.replace(chosen, threads=threads)

    def _measure(self, fewer_threads_gain: float, recon_extra: int, steps: int = 8,
                 seconds: float = 3.0) -> tuple[float, float, int | None]:
        """Seconds per training step (at the mean padded size of an epoch's batches) and per validation, timed on
        a copy of the model; the random state is put back, so the run is the same as without measuring.

        On a CPU with several threads (and no OMP_NUM_THREADS set), steps are timed with all of them and with
        one, and one is kept for the run when a step is `fewer_threads_gain` times as long on it or shorter (its
        count is the third figure, else None): small batches of long items (sentences) measured a step 20-30%
        faster on one thread of two, whose overhead of splitting small matrix products exceeds their gain.
        `recon_extra`: the characters past an item's end that validation reconstructs to."""
        rng = torch.get_rng_state()
        rng_cuda = torch.cuda.get_rng_state() if self.device.type == "cuda" else None
        scaler = self.scaler.state_dict() if self.scaler is not None else None
        original, original_net, optimizer = self.model, self.net, self.optimizer
        self.model = copy.deepcopy(original)
        self.net = self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        try:
            batches = self.train_data.batch_indices(self.cfg.batch_size, shuffle=True, seed=self.cfg.seed + 7919)
            padded = np.array([len(b) * (int(self.train_data.lengths[b].max()) + 1) for b in batches], dtype=float)
            order = np.random.default_rng(self.cfg.seed).permutation(len(batches))
            self.model.train()
            step_s, threads = self._step_time(batches, padded, order, steps, seconds), None
            most = torch.get_num_threads()
            if self.device.type == "cpu" and self.world == 1 and most > 1 and "OMP_NUM_THREADS" not in os.environ:
                torch.set_num_threads(1)
                one = self._step_time(batches, padded, order, steps, seconds)
                if one < fewer_threads_gain * step_s:
                    step_s, threads = one, 1
                else:
                    torch.set_num_threads(most)
            valid_s = self._validation_time(recon_extra)
        finally:
            self.model, self.net, self.optimizer = original, original_net, optimizer
            if scaler is not None:
                self.scaler.load_state_dict(scaler)
            torch.set_rng_state(rng)
            if rng_cuda is not None:
                torch.cuda.set_rng_state(rng_cuda)
        return max(step_s, 1e-6), valid_s, threads

    def _step_time(self, batches: list, padded: np.ndarray, order: np.ndarray, steps: int, seconds: float) -> float:
        """Seconds per training step at the mean padded size `padded` of the batches: a pass over random batches
        for about half of `seconds` (at least `steps` of them) pays for their shapes' kernels and plans (on a GPU,
        the first step of each new shape costs several ordinary ones: a short probe timed on fresh shapes measured
        steps 60% slower than the run's); the same batches again are timed, and a step's time is fitted as
        a + b * padded characters."""
        seen, start = [], time.perf_counter()
        while len(seen) < min(len(order), 100) and (time.perf_counter() - start < seconds / 2 or len(seen) < steps):
            i = order[len(seen)]
            self.step(batches[i], count=False)
            seen.append(i)
        _sync(self.device)
        times = []
        for i in seen:
            t0 = time.perf_counter()
            self.step(batches[i], count=False)
            _sync(self.device)
            times.append(time.perf_counter() - t0)
        x, y = padded[seen], np.array(times)
        slope = max(float(np.polyfit(x, y, 1)[0]), 0.0) if len(set(x)) > 1 else 0.0
        return float(y.mean() + slope * (padded.mean() - x.mean()))

    def _validation_time(self, recon_extra: int) -> float:
        """Seconds per validation, as a trained model would take it."""
        t0, parts = time.perf_counter(), {}
        self._validation_figures(parts)
        _sync(self.device)
        # an untrained decoder never ends an item, so it reconstructs each batch to its limit (T + 8); a
        # trained one stops near the batch's longest item (T): scale that part of the time to match
        n = min(self.cfg.recon_items, len(self.valid_data))
        longest = [int(self.valid_data.lengths[i:i + 512].max()) + 1 for i in range(0, n, 512)]
        ratio = float(np.mean([t / (t + recon_extra) for t in longest])) if longest else 1.0
        return time.perf_counter() - t0 - parts.get("recon", 0.0) * (1 - ratio)
