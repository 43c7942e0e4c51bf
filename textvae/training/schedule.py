"""A training budget decided up front, and a learning rate planned to its end.

The budget is a number of optimiser steps: from --steps, from --epochs x steps per epoch, from --minutes
converted with the measured time of a step, or, with none of them, one that fits the corpus (`DEFAULT_*`
below): enough epochs for a small corpus, a bounded time for a large one. The learning rate then warms
up linearly and decays to a floor at the budget's end: cosine (Loshchilov & Hutter 2017) or linear.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

LR_SCHEDULES = ("cosine", "linear", "constant")

# The default budget: DEFAULT_EPOCHS passes, at least MIN_STEPS steps, at most DEFAULT_MINUTES of wall time.
DEFAULT_EPOCHS = 6
MIN_STEPS = 600
DEFAULT_MINUTES = {"cpu": 15.0, "cuda": 30.0}
DEFAULT_PATIENCE = 3          # a planned run stops after 3 validations without a better smoothed objective
LEGACY_EPOCHS = 10            # --lr-schedule constant keeps the earlier default: 10 epochs
MINUTES_SHARE = 0.97          # --minutes N plans for this share of N (the rest: saving, the last validation)
VALIDATIONS = (10, 20)        # a planned run validates at least 10 and at most about 20 times,
MIN_VALID_GAP = 100           # but never more often than every 100 steps (and always at its end)


@dataclass(frozen=True)
class Plan:
    """What a run will do, decided before its first step."""
    total_steps: int          # optimiser steps in the budget
    valid_every: int          # steps between validations
    lr_warmup: int            # steps of linear learning-rate warm-up
    why: str                  # the budget, in words, for the user
    estimate_s: float | None  # the expected wall time, when it was measured
    step_s: float | None = None    # measured seconds per step (mean over an epoch's batch lengths)
    valid_s: float | None = None   # measured seconds per validation
    seconds: float | None = None   # a budget in time: the seconds the steps were fitted into (else None)
    most_steps: int | None = None  # and the most steps it may grow to when refitted (None: no bound)
    threads: int | None = None     # CPU threads the run uses, when the measurement chose them (else None)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def learning_rate(schedule: str, peak: float, step: int, total: int, warmup: int, floor: float) -> float:
    """The learning rate of optimiser step `step` (0-based): linear warm-up over `warmup` steps, then cosine or
    linear decay from `peak` to `floor * peak` at step `total`; `constant` is `peak` throughout."""
    if schedule == "constant":
        return peak
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 0.5 * (1.0 + math.cos(math.pi * frac)) if schedule == "cosine" else 1.0 - frac
    return peak * (floor + (1.0 - floor) * shape)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def plan(per_epoch: int, device: str, schedule: str, epochs: int | None, max_steps: int | None,
         max_minutes: float | None, lr_warmup: int | None, step_s: float | None = None,
         valid_s: float | None = None) -> Plan:
    """The budget and its cadence. `step_s` and `valid_s` (measured) are needed for --minutes and for the
    default budget, and give the estimate of the wall time."""
    if schedule == "constant":           # today's behaviour: a fixed number of epochs, validated after each
        total = max_steps if max_steps is not None else (epochs or LEGACY_EPOCHS) * per_epoch
        return Plan(total, per_epoch, 0, f"{total:,} steps", None)
    timed = step_s is not None and valid_s is not None
    bound: tuple[float, int | None] = (None, None)      # a budget in time, and the most steps it may grow to

    def cost(steps: int) -> float:
        return steps * step_s + _validations(steps, per_epoch) * valid_s

    if max_steps is not None:
        total, why = max_steps, f"{max_steps:,} steps (--steps)"
    elif epochs is not None:
        total, why = epochs * per_epoch, f"{epochs} epochs of {per_epoch:,} steps (--epochs)"
    elif max_minutes is not None:
        seconds = MINUTES_SHARE * max_minutes * 60
        total = _steps_within(seconds, cost, per_epoch) if timed else per_epoch
        why = f"{total:,} steps fit in {max_minutes:g} min (--minutes) at the measured speed"
        if timed:
            bound = (seconds, None)
    else:
        cap = DEFAULT_MINUTES["cuda" if device.startswith("cuda") else "cpu"]
        wanted = max(DEFAULT_EPOCHS * per_epoch, MIN_STEPS)
        reason = (f"{DEFAULT_EPOCHS} epochs of {per_epoch:,} steps" if wanted > MIN_STEPS else
                  f"at least {MIN_STEPS:,} steps ({wanted / per_epoch:.0f} epochs of {per_epoch:,}): a small corpus")
        if timed and cost(wanted) > cap * 60:
            bound = (MINUTES_SHARE * cap * 60, wanted)
            total = _steps_within(bound[0], cost, per_epoch)
            why = (f"{total:,} steps ({total / per_epoch:.1f} epochs): {reason} would take "
                   f"{_minutes(cost(wanted))}, over the default limit of {cap:g} min on this device; "
                   f"--steps, --epochs or --minutes to choose")
        else:
            total, why = wanted, f"{wanted:,} steps: {reason}; --steps, --epochs or --minutes to choose"
    total = max(1, total)
    warmup = lr_warmup if lr_warmup is not None else min(500, max(1, total // 20))
    valid_every = _valid_every(total, per_epoch)
    return Plan(total, valid_every, min(warmup, total), why, cost(total) if timed else None, step_s, valid_s,
                *bound)


def refit(p: Plan, step: int, elapsed: float, step_s: float, valid_s: float) -> Plan:
    """A budget in time, refitted at step `step` (after `elapsed` seconds) to the pace measured so far: the
    steps that still fit in the time left, so that the run ends on time even where the first measurement
    (a few seconds on an untrained model) was off. The rest of the plan stays as it was."""
    def cost(steps: int) -> float:
        return steps * step_s + math.ceil(steps / p.valid_every) * valid_s

    left = p.seconds - elapsed
    more = _steps_within(left, cost, p.valid_every) if cost(1) <= left else 1
    total = step + more
    if p.most_steps is not None:
        total = min(total, max(p.most_steps, step + 1))
    return dataclasses.replace(p, total_steps=total, estimate_s=elapsed + cost(total - step),
                               step_s=step_s, valid_s=valid_s)


def _valid_every(total: int, per_epoch: int) -> int:
    """Every epoch, unless that gives fewer than 10 or more than about 20 validations in the run."""
    low, high = VALIDATIONS
    every = per_epoch
    if total / per_epoch < low:
        every = math.ceil(total / low)
    elif total / per_epoch > high:
        every = math.ceil(total / high)
    return max(1, min(max(every, MIN_VALID_GAP), total))


def _validations(total: int, per_epoch: int) -> int:
    return math.ceil(total / _valid_every(total, per_epoch))


def _steps_within(seconds: float, cost, per_epoch: int) -> int:
    """The most steps whose cost fits in `seconds` (cost grows with steps)."""
    lo, hi = 1, 1
    while cost(hi) <= seconds and hi < 10**9:
        lo, hi = hi, hi * 2
    while lo < hi - 1:
        mid = (lo + hi) // 2
        if cost(mid) <= seconds:
            lo = mid
        else:
            hi = mid
    return lo
