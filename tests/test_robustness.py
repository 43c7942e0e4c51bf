"""Interruption, resumption, durability of checkpoints, untrusted files, numerical faults."""

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from words import TINY_MODEL, WORDS

from textvae.data.items import EncodedItems
from textvae.data.tokenizer import CharTokenizer
from textvae.io import checkpoint
from textvae.io.checkpoint import CheckpointError
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig, TrainConfig, TrainingError
from textvae.training.trainer import train

ITEMS = [w + s for w in WORDS for s in ("", "s", "ing")]


def _setup(seed=0):
    tok = CharTokenizer.fit(ITEMS)
    torch.manual_seed(seed)
    model = TextVAE(ModelConfig(tok.vocab_size, **TINY_MODEL))
    return model, tok, EncodedItems(ITEMS[:-10], tok), EncodedItems(ITEMS[-10:], tok)


CFG = TrainConfig(epochs=3, batch_size=16, kl_warmup=10, recon_items=0, device="cpu", word_dropout=0.3)


def test_interrupted_and_resumed_run_ends_with_bit_identical_weights(tmp_path):
    model, tok, tr, va = _setup()
    final_step = list(train(model, tok, tr, va, CFG, tmp_path / "straight"))[-1]["step"]
    assert final_step == 21                                 # 98 items, batches of 16: 7 steps an epoch
    reference = checkpoint.load(tmp_path / "straight" / "last.safetensors")[0].state_dict()

    model, tok, tr, va = _setup()
    stop = threading.Event()
    for ev in train(model, tok, tr, va, CFG, tmp_path / "broken", stop=stop):
        if ev["event"] == "step" and ev["step"] == 9:       # mid-epoch 2
            stop.set()
        last = ev
    assert last["reason"] == "interrupted" and last["step"] == 9
    saved = checkpoint.load_training_state(tmp_path / "broken")
    assert saved["state"]["step"] == 9
    events = list(train(saved["model"], saved["tokenizer"], tr, va, CFG, tmp_path / "broken", resume=saved))
    assert events[-1]["reason"] == "finished" and events[-1]["step"] == final_step
    resumed = checkpoint.load(tmp_path / "broken" / "last.safetensors")[0].state_dict()
    for name, tensor in reference.items():
        assert torch.equal(tensor, resumed[name]), name


def test_nan_loss_skips_the_step_and_stops_after_repeated_failures(tmp_path):
    model, tok, tr, va = _setup()
    with torch.no_grad():
        model.to_logits.bias.fill_(float("nan"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingError, match="not finite"):
        list(train(model, tok, tr, va, TrainConfig(max_steps=50, batch_size=16, device="cpu", max_bad_steps=5),
                   tmp_path / "nan"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) or torch.isnan(v).any(), k     # nothing was updated


SAVER = """
import sys, torch
from textvae.io import checkpoint
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig
from textvae.data.tokenizer import CharTokenizer
tok = CharTokenizer.fit(["abcdefghij"])
model = TextVAE(ModelConfig(tok.vocab_size, embed_dim=64, hidden_dim=256, latent_dim=32))
print("ready", flush=True)
i = 0
while True:
    with torch.no_grad():
        model.to_logits.bias.fill_(float(i))
    checkpoint.save(sys.argv[1], model, tok, progress={"i": i})
    i += 1
"""


@pytest.mark.slow
def test_kill_during_save_leaves_a_loadable_checkpoint_20_of_20(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    target = tmp_path / "m.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ok = 0
    for trial in range(20):
        proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 5
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05 + 0.037 * trial)                     # kill at a different moment of the save loop each time
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = checkpoint.load(target)
        assert float(ck.model.to_logits.bias[0].detach()) == ck.progress["i"]
        ok += 1
    assert ok == 20


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {Path.cwd() / 'PWNED'}",))


def test_pickle_payloads_anywhere_in_a_run_directory_never_run(tmp_path, monkeypatch, trained_run):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    bomb = pickle.dumps(Payload())
    for name in ("best.safetensors", "last.safetensors", "resume.safetensors", "model.pt", "optimizer.pt",
                 "run.json", "metrics.jsonl"):
        (run / name).write_bytes(bomb)
    with pytest.raises(CheckpointError):
        checkpoint.load(run)
    with pytest.raises(CheckpointError):
        checkpoint.load_training_state(run)
    assert not (tmp_path / "PWNED").exists()
    # a good checkpoint beside the bombs loads, and still nothing runs
    (run / "best.safetensors").write_bytes((trained_run / "best.safetensors").read_bytes())
    checkpoint.load(run)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow
def test_cli_sigint_saves_and_resume_continues(tmp_path, tiny_corpus):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "textvae", "train", str(tiny_corpus), "--steps", "100000", "--batch-size", "8",
           "--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "8"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = tmp_path / "runs" / "tiny" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not metrics.exists() or metrics.stat().st_size < 500):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "textvae train --resume" in err
    saved = checkpoint.load_training_state(tmp_path / "runs" / "tiny")
    step = saved["state"]["step"]
    assert step > 0
    r = subprocess.run([sys.executable, "-m", "textvae", "train", "--resume", "runs/tiny", "--steps", str(step + 5)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert f"resuming runs/tiny at step {step:,}" in r.stderr
    assert checkpoint.load_training_state(tmp_path / "runs" / "tiny")["state"]["step"] == step + 5
