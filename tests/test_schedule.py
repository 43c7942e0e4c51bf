"""The training budget and its schedules: warm-up, decay to a floor, beta reaching its final value, and the
earlier behaviour kept under --lr-schedule constant."""

import json
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from words import WORDS

from textvae.data.items import EncodedItems
from textvae.data.tokenizer import CharTokenizer
from textvae.model.objective import KLSchedule, planned
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig, TrainConfig
from textvae.training.schedule import (
    DEFAULT_EPOCHS,
    DEFAULT_PATIENCE,
    MIN_STEPS,
    MIN_VALID_GAP,
    learning_rate,
    plan,
    refit,
)
from textvae.training.trainer import train

ITEMS = [w + s for w in WORDS[:25] for s in ("", "s", "ed", "ing")]


@pytest.mark.parametrize("shape", ["cosine", "linear"])
def test_learning_rate_warms_up_then_decays_to_its_floor(shape):
    lrs = [learning_rate(shape, 1e-3, t, 1000, 100, 0.1) for t in range(1001)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[99] == pytest.approx(1e-3)          # linear warm-up to the peak
    assert all(a < b for a, b in pairwise(lrs[:100]))
    assert all(a >= b for a, b in pairwise(lrs[100:]))                          # then never rises
    assert lrs[1000] == pytest.approx(1e-4) and min(lrs[100:]) == pytest.approx(1e-4)  # the floor, at the end
    mid = lrs[550]
    assert mid == pytest.approx(0.55e-3, rel=0.02)                                    # half-way down at mid-decay
    assert learning_rate("constant", 1e-3, 500, 1000, 100, 0.1) == 1e-3


def test_budget_from_steps_epochs_minutes_and_the_default():
    assert plan(50, "cpu", "cosine", None, 700, None, None).total_steps == 700
    assert plan(50, "cpu", "cosine", 3, None, None, None).total_steps == 150
    timed = plan(50, "cpu", "cosine", None, None, 1.0, None, step_s=0.1, valid_s=1.0)
    assert 450 < timed.total_steps < 600 and timed.estimate_s <= 60
    small = plan(50, "cpu", "cosine", None, None, None, None, step_s=0.001, valid_s=0.01)
    assert small.total_steps == MIN_STEPS and "small corpus" in small.why
    huge = plan(100_000, "cpu", "cosine", None, None, None, None, step_s=0.5, valid_s=30.0)
    assert huge.estimate_s <= 15 * 60 and "limit" in huge.why and huge.total_steps < 100_000
    assert plan(50, "cpu", "constant", None, None, None, None).total_steps == 500           # the earlier 10 epochs
    for p in (small, huge):
        assert min(10, p.total_steps // MIN_VALID_GAP) <= -(-p.total_steps // p.valid_every) <= 21 and p.lr_warmup <= 500
    assert timed.valid_every == 100                    # never more often than every 100 steps


def test_a_budget_in_time_is_refitted_to_the_pace_of_the_run():
    default = plan(1000, "cpu", "cosine", None, None, None, None, step_s=0.16, valid_s=5.0)   # the 15-min limit
    assert default.seconds is not None and default.most_steps == DEFAULT_EPOCHS * 1000
    # the run turns out 20% slower than measured: fewer steps, ending within the limit again
    slower = refit(default, default.valid_every, default.valid_every * 0.192 + 6.0, 0.192, 6.0)
    assert slower.total_steps < default.total_steps and slower.estimate_s <= default.seconds
    assert slower.valid_every == default.valid_every and slower.lr_warmup == default.lr_warmup
    # faster: more steps, but never more than the default budget wanted (DEFAULT_EPOCHS epochs)
    faster = refit(default, default.valid_every, default.valid_every * 0.01, 0.01, 0.5)
    assert faster.total_steps == DEFAULT_EPOCHS * 1000
    minutes = plan(50, "cpu", "cosine", None, None, 1.0, None, step_s=0.1, valid_s=1.0)
    assert refit(minutes, 100, 10.0, 0.05, 1.0).total_steps > minutes.total_steps      # --minutes: no step bound
    assert plan(50, "cpu", "cosine", None, 700, None, None).seconds is None            # a budget in steps stays
    late = refit(minutes, 100, 70.0, 0.1, 1.0)                                         # out of time already
    assert late.total_steps == 101


@pytest.mark.parametrize("kind", ["linear", "logistic", "cyclical"])
def test_kl_warm_up_fitted_to_the_budget_reaches_its_final_value(kind):
    fitted = planned(KLSchedule(kind, warmup=2000, beta_max=0.8), total_steps=300)
    betas = [fitted(t) for t in range(300)]
    assert betas[0] < 0.8 and betas[-1] == 0.8
    if kind != "cyclical":
        assert all(b == 0.8 for b in betas[150:])                 # warm-up within half the budget, then held


def _run(tmp_path, items=ITEMS, **cfg):
    tok = CharTokenizer.fit(items)
    torch.manual_seed(0)
    model = TextVAE(ModelConfig(tok.vocab_size, embed_dim=16, hidden_dim=32, latent_dim=8))
    config = TrainConfig(batch_size=16, recon_items=20, device="cpu", log_every=1, **cfg)
    return list(train(model, tok, EncodedItems(items[:-12], tok), EncodedItems(items[-12:], tok), config, tmp_path))


def test_a_tiny_run_follows_its_planned_schedule(tmp_path):
    events = _run(tmp_path, max_steps=60, kl_warmup=10_000, lr=1e-2, lr_floor=0.1, beta=0.5)
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 60 and events[-1]["reason"] == "finished"
    lrs = [e["lr"] for e in steps]
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1e-2) and 0 < peak < 10
    assert lrs[-1] == pytest.approx(1e-3, rel=0.05)
    assert steps[-1]["beta"] == 0.5 and steps[0]["beta"] < 0.5       # the 10,000-step warm-up was fitted to 60 steps
    valids = [e for e in events if e["event"] == "valid"]
    assert [v["step"] for v in valids] == [60]                       # a short run validates at its end


def test_a_run_with_minutes_refits_its_steps_after_the_first_validation(tmp_path):
    events = _run(tmp_path, max_minutes=0.05)
    refits = [e for e in events if e["event"] == "refit"]
    valids = [e for e in events if e["event"] == "valid"]
    assert len(refits) == 1 and refits[0]["step"] == valids[0]["step"]
    assert events[-1]["step"] <= refits[0]["total_steps"] and refits[0]["estimate_s"] <= 0.05 * 60
    assert events[-1]["time"] < 0.05 * 60 + 2


def test_a_measured_budget_picks_its_cpu_threads_and_gives_them_back(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    try:
        events = _run(tmp_path, max_minutes=0.05)
        chosen = events[0]["plan"]["threads"]
        assert chosen in (None, 1)                      # one thread when it measured faster, else all of them
        assert torch.get_num_threads() == 2             # given back when the run ends
        saved = json.loads((tmp_path / "run.json").read_text())["plan"]
        assert saved["threads"] == chosen
    finally:
        torch.set_num_threads(1)


def test_constant_schedule_reproduces_the_earlier_numbers(tmp_path):
    """tests/data/constant_schedule.json was written by textvae before planned schedules (commit 3635a6b), with
    the same run; under --lr-schedule constant the losses must be the same (on one machine, bit for bit:
    benchmarks/golden.py checks that; here within float noise of other CPUs)."""
    want = json.loads((Path(__file__).parent / "data" / "constant_schedule.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        events = _run(tmp_path, want["items"], epochs=3, kl_warmup=10, lr_schedule="constant")
    finally:
        torch.set_num_threads(threads)
    got = [e["loss"] for e in events if e["event"] == "step"]
    assert got == pytest.approx(want["losses"], rel=1e-5)
    assert [e["nll_elbo"] for e in events if e["event"] == "valid"] == pytest.approx(want["valid_nll_elbo"], rel=1e-5)


@pytest.mark.slow
def test_a_planned_run_stops_early_once_validation_stops_improving_unless_told_not_to(tmp_path):
    """A tiny corpus trained far too long: the default patience ends it after a few validations without a
    better smoothed objective; --patience 0 trains every step of the budget."""
    kw = {"max_steps": 1200, "lr": 2e-2, "lr_floor": 0.5, "kl_warmup": 10}
    events = _run(tmp_path, **kw)
    valids = [e for e in events if e["event"] == "valid"]
    assert events[-1]["reason"] == "early stop" and events[-1]["step"] < 1200
    assert len(valids) >= DEFAULT_PATIENCE + 1 and not any(v["best"] for v in valids[-DEFAULT_PATIENCE:])
    assert events[-1]["best"]["objective"] == min(v["objective"] for v in valids)
    events = _run(tmp_path / "never", patience=0, **kw)
    assert events[-1]["reason"] == "finished" and events[-1]["step"] == 1200
