"""Throughput figures: textvae's training loop against the bare recurrent kernels it is built on.

For one model size and device, on synthetic batches of B items of T characters:
- train: characters per second through textvae's own training loop (`train.train`), all of it:
  batching, character dropout, encoder, reparameterisation, decoder, loss, backward, clipping, Adam;
- kernels: the same shapes through bare `nn.LSTM`/`nn.GRU` modules alone (encoder both ways and
  decoder, forward and backward), the limit the rest of the code can only approach;
- one_at_a_time: the training loop fed one item per step, as the tutorials do;
- generate: items per second of batched sampling from the prior;
- peak memory: resident set size (CPU) or the largest CUDA allocation.
Each figure is the median of `repeats` timed runs after a warm-up.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from dataclasses import asdict

import numpy as np
import torch

from ..data.items import EncodedItems
from ..data.tokenizer import CharTokenizer
from ..decoding.loop import decode_codes
from ..model.vae import CELLS, TextVAE
from ..settings import BenchConfig, ModelConfig, TrainConfig
from .trainer import pick_device, train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _items(n: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz "))
    return ["".join(rng.choice(letters, size=length)) for _ in range(n)]


def _loop_throughput(cfg: BenchConfig, device: torch.device, batch_size: int, steps: int, repeats: int) -> list[float]:
    """Characters per second through train.train, timed between step events (validation excluded)."""
    items = _items(batch_size * (steps + 3), cfg.seq_len - 1)
    tok = CharTokenizer.fit(items)
    data = EncodedItems(items, tok)
    valid = EncodedItems(items[:2], tok)
    rates = []
    for r in range(repeats):
        torch.manual_seed(r)
        model = TextVAE(ModelConfig(tok.vocab_size, cell=cfg.cell, embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim,
                                    encoder_dim=cfg.encoder_dim, latent_dim=cfg.latent_dim))
        tcfg = TrainConfig(max_steps=steps + 3, batch_size=batch_size, recon_items=0, device=str(device), log_every=10**9)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = None
            for ev in train(model, tok, data, valid, tcfg, tmp):
                if ev["event"] == "step" and ev["step"] == 3:
                    _sync(device)
                    t0 = time.perf_counter()
                elif ev["event"] == "step" and ev["step"] == steps + 3:
                    _sync(device)
                    rates.append(steps * batch_size * cfg.seq_len / (time.perf_counter() - t0))
    return rates


def _encoder_width(cfg: BenchConfig) -> int:
    """The encoder width the benchmarked model has (ModelConfig resolves the default)."""
    return ModelConfig(2, hidden_dim=cfg.hidden_dim, encoder_dim=cfg.encoder_dim).encoder_dim


def _kernel_throughput(cfg: BenchConfig, device: torch.device) -> list[float]:
    """The same shapes through bare RNN modules: encoder forward and reverse, decoder; forward + backward."""
    rnn = CELLS[cfg.cell]
    B, T, E, H, Z = cfg.batch_size, cfg.seq_len, cfg.embed_dim, cfg.hidden_dim, cfg.latent_dim
    He = _encoder_width(cfg)
    enc_f = rnn(E, He, batch_first=True).to(device)
    enc_r = rnn(E, He, batch_first=True).to(device)
    dec = rnn(E + Z, H, batch_first=True).to(device)
    x = torch.randn(B, T, E, device=device, requires_grad=True)
    xd = torch.randn(B, T, E + Z, device=device, requires_grad=True)

    def step():
        a, _ = enc_f(x)
        b, _ = enc_r(x)
        c, _ = dec(xd)
        (a.sum() + b.sum() + c.sum()).backward()

    for _ in range(3):
        step()
    rates = []
    for _ in range(cfg.repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(cfg.steps):
            step()
        _sync(device)
        rates.append(cfg.steps * B * T / (time.perf_counter() - t0))
    return rates


def _generate_rate(cfg: BenchConfig, device: torch.device) -> list[float]:
    tok = CharTokenizer.fit(_items(10, cfg.seq_len))
    torch.manual_seed(0)
    model = TextVAE(ModelConfig(tok.vocab_size, cell=cfg.cell, embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim,
                                encoder_dim=cfg.encoder_dim, latent_dim=cfg.latent_dim)).to(device).eval()
    rates = []
    for r in range(max(1, cfg.repeats // 2) + 1):
        z = torch.randn(cfg.generate_n, cfg.latent_dim, device=device)
        gen = torch.Generator(device=device).manual_seed(r)
        _sync(device)
        t0 = time.perf_counter()
        ids = decode_codes(model, z, max_len=cfg.seq_len, greedy=False, generator=gen)
        _ = [tok.decode(row) for row in ids.tolist()]
        _sync(device)
        if r > 0:                                       # the first run warms up
            rates.append(cfg.generate_n / (time.perf_counter() - t0))
    return rates


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # kB on Linux


def run(cfg: BenchConfig, progress=None) -> dict:
    """All figures as one dict (medians, with every repeat kept)."""
    device = pick_device(cfg.device)
    say = progress or (lambda message: None)
    out = {"config": asdict(cfg), "device": str(device), "threads": torch.get_num_threads(),
           "encoder_dim": _encoder_width(cfg),
           "torch": torch.__version__}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    say("bare kernels")
    k = _kernel_throughput(cfg, device)
    say("training loop")
    t = _loop_throughput(cfg, device, cfg.batch_size, cfg.steps, cfg.repeats)
    out["kernel_chars_per_s"], out["kernel_runs"] = statistics.median(k), k
    out["train_chars_per_s"], out["train_runs"] = statistics.median(t), t
    out["train_vs_kernel"] = out["train_chars_per_s"] / out["kernel_chars_per_s"]
    if cfg.one_at_a_time:
        say("one item at a time")
        one = _loop_throughput(cfg, device, 1, max(cfg.steps * 4, 40), max(3, cfg.repeats // 2))
        out["one_at_a_time_chars_per_s"], out["one_at_a_time_runs"] = statistics.median(one), one
        out["speedup_vs_one_at_a_time"] = out["train_chars_per_s"] / out["one_at_a_time_chars_per_s"]
    say("generation")
    g = _generate_rate(cfg, device)
    out["generate_items_per_s"], out["generate_runs"] = statistics.median(g), g
    out["peak_memory_mb"] = peak_memory_mb(device)
    return out
