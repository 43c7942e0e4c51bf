"""The CUDA path: training with mixed precision on a GPU, and a model trained there used on a CPU.

Skipped where no CUDA GPU is present (CI has none). `TEXTVAE_TEST_DEVICE=cpu pytest tests/test_cuda.py`
runs the same checks on the CPU, to test the tests themselves.
"""

import json
import os
import threading

import pytest
import torch
from click.testing import CliRunner

import textvae
from textvae.cli.commands import cli
from textvae.data.items import EncodedItems
from textvae.data.tokenizer import CharTokenizer
from textvae.io import checkpoint
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig, TrainConfig
from textvae.training import trainer as train_module
from textvae.training.trainer import train

DEVICE = os.environ.get("TEXTVAE_TEST_DEVICE", "cuda")
ON_GPU = DEVICE.startswith("cuda")
pytestmark = pytest.mark.skipif(ON_GPU and not torch.cuda.is_available(), reason="no CUDA GPU")

TINY = ["--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "8", "--steps", "60", "--batch-size", "32"]


def _words(corpus):
    return [line.strip() for line in corpus.read_text().splitlines() if line.strip()]


def _train(corpus, out, steps=60, stop_at=None, resume=None, **cfg):
    """Train a tiny model on `DEVICE` through the library; the list of its events."""
    words = _words(corpus)
    tok = CharTokenizer.fit(words)
    torch.manual_seed(0)
    model = TextVAE(ModelConfig(tok.vocab_size, embed_dim=16, hidden_dim=32, latent_dim=8))
    if resume is not None:
        model, tok = resume["model"], resume["tokenizer"]
    config = TrainConfig(max_steps=steps, batch_size=32, kl_warmup=20, recon_items=20, device=DEVICE, **cfg)
    stop = threading.Event()
    events = []
    for ev in train(model, tok, EncodedItems(words[:250], tok), EncodedItems(words[250:], tok), config, out,
                    stop=stop, resume=resume):
        events.append(ev)
        if stop_at is not None and ev["event"] == "step" and ev["step"] == stop_at:
            stop.set()
    return events


def test_train_with_mixed_precision_then_use_the_model_on_the_cpu(tmp_path, tiny_corpus):
    events = _train(tiny_corpus, tmp_path / "run")
    start, done = events[0], events[-1]
    assert start["device"].startswith(DEVICE) and done["reason"] == "finished"
    if ON_GPU:
        assert start["amp"] in ("torch.bfloat16", "torch.float16")
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert len(losses) == 60 and all(abs(x) < 1e6 for x in losses)
    assert sum(losses[-10:]) < sum(losses[:10])            # it learned something

    on_cpu = textvae.load(tmp_path / "run", device="cpu")
    assert on_cpu.device.type == "cpu"
    items = on_cpu.generate(20, seed=3)
    assert len(items) == 20 and all(items)
    on_gpu = textvae.load(tmp_path / "run", device=DEVICE)
    assert on_gpu.device.type == torch.device(DEVICE).type
    words = _words(tiny_corpus)[:40]
    a, b = on_cpu.reconstruct(words, strategy="greedy"), on_gpu.reconstruct(words, strategy="greedy")
    same = sum(x == y for x, y in zip(a, b)) / len(words)
    assert same >= 0.9, list(zip(a, b))                    # float rounding may flip a rare near-tie, no more


def test_the_command_line_trains_on_the_device(tmp_path, tiny_corpus):
    r = CliRunner().invoke(cli, ["train", str(tiny_corpus), *TINY, "--device", DEVICE, "--out", str(tmp_path / "run")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert textvae.load(tmp_path / "run").generate(5, seed=0)


def test_seeded_sampling_on_the_device_repeats(trained_run):
    m = textvae.load(trained_run, device=DEVICE)
    assert m.generate(30, seed=11) == m.generate(30, seed=11)
    assert m.generate(30, seed=11) != m.generate(30, seed=12)


@pytest.mark.parametrize("options", [{}, {"strategy": "greedy"}, {"top_p": 0.8, "no_repeat_ngram": 3}])
def test_blocks_decoded_together_on_the_device_give_each_blocks_own_items(trained_run, options):
    """On a GPU, `iter_generate` decodes up to 16 blocks of 256 in one batch, each block from its own streams:
    the first k items are the same whatever n, and the same as the device's decoding of each block alone."""
    from textvae.api import BLOCK
    m = textvae.load(trained_run, device=DEVICE)
    many = m.generate(3 * BLOCK + 40, seed=4, **options)
    assert len(many) == 3 * BLOCK + 40 and all(many)
    assert m.generate(BLOCK + 10, seed=4, **options) == many[:BLOCK + 10]
    assert m.generate(7, seed=4, **options) == many[:7]


def test_half_precision_with_a_loss_scaler_trains(tmp_path, tiny_corpus, monkeypatch):
    """GPUs without bf16 train in fp16 with a gradient scaler: force that path on this one."""
    if not ON_GPU:
        pytest.skip("autocast is used on CUDA only")
    monkeypatch.setattr(train_module, "autocast_dtype", lambda device, amp: torch.float16 if amp else None)
    events = _train(tiny_corpus, tmp_path / "fp16")
    assert events[0]["amp"] == "torch.float16" and events[-1]["reason"] == "finished"
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert sum(losses[-10:]) < sum(losses[:10])


def test_no_amp_trains_in_full_precision(tmp_path, tiny_corpus):
    events = _train(tiny_corpus, tmp_path / "fp32", amp=False)
    assert events[0]["amp"] is None and events[-1]["reason"] == "finished"


def test_an_interrupted_device_run_resumes_to_its_planned_end(tmp_path, tiny_corpus):
    events = _train(tiny_corpus, tmp_path / "run", steps=40, stop_at=15)
    assert events[-1]["reason"] == "interrupted" and events[-1]["step"] == 15
    saved = checkpoint.load_training_state(tmp_path / "run")
    assert saved["state"]["step"] == 15
    events = _train(tiny_corpus, tmp_path / "run", steps=40, resume=saved)
    assert events[0]["resumed_at"] == 15
    assert events[-1]["reason"] == "finished" and events[-1]["step"] == 40


def test_evaluate_on_the_device_agrees_with_the_cpu(trained_run, tiny_corpus, tmp_path):
    figures = {}
    for device in ("cpu", DEVICE):
        out = tmp_path / f"{device}.json"
        r = CliRunner().invoke(cli, ["evaluate", str(tiny_corpus), "--model", str(trained_run), "--device", device,
                                     "--samples", "20", "--num-samples", "20", "--recon-items", "20", "--pairs", "2",
                                     "--json", str(out)], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        figures[device] = json.loads(out.read_text())
    a, b = figures["cpu"]["iw_nats_per_char"], figures[DEVICE]["iw_nats_per_char"]
    assert abs(a - b) / a < 0.02, (a, b)       # other random draws for the importance samples, the same bound
