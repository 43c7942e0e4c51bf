"""torchrun with the gloo backend on the CPU: 2 processes must train like 1 with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch

from textvae.io import checkpoint

ARGS = ["--steps", "24", "--batch-size", "16", "--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "8",
        "--kl-warmup", "10", "--seed", "3", "--device", "cpu"]     # gloo on the CPU, on a machine with a GPU too


def _free_port() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _losses(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in lines if r["kind"] == "step"], [r for r in lines if r["kind"] == "epoch"]


@pytest.mark.slow
def test_two_gloo_processes_follow_the_single_process_loss_curve(tmp_path, tiny_corpus):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    one = subprocess.run([sys.executable, "-m", "textvae", "train", str(tiny_corpus), "--out", "one", *ARGS],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                          "--master-port", _free_port(),
                          "-m", "textvae", "train", str(tiny_corpus), "--out", "two", *ARGS],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert two.returncode == 0, two.stderr[-3000:]
    steps1, epochs1 = _losses(tmp_path / "one")
    steps2, epochs2 = _losses(tmp_path / "two")
    assert [s for s, _ in steps1] == [s for s, _ in steps2] and len(steps1) >= 2
    for (_, a), (_, b) in zip(steps1, steps2):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-4)
    assert epochs2[-1]["nll_elbo"] == pytest.approx(epochs1[-1]["nll_elbo"], rel=1e-4)
    w1 = checkpoint.load(tmp_path / "one" / "last.safetensors")[0].state_dict()
    w2 = checkpoint.load(tmp_path / "two" / "last.safetensors")[0].state_dict()
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], rtol=1e-4, atol=1e-5)
    # written once, by rank 0: one run.json, one set of metrics lines
    assert len(epochs2) == len(epochs1)
    assert two.stderr.count("parameters) into") == 1 and two.stderr.count("checkpoints:") == 1


def test_more_processes_than_gpus_is_one_clear_error(monkeypatch):
    """NCCL cannot share a GPU between two processes: torchrun with more processes than the machine has GPUs
    gets a line that says what to do, not NCCL's error (seen on a 1-GPU machine with --nproc-per-node 2)."""
    from textvae.settings import RunError
    from textvae.training import distributed
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RunError, match="2 processes on this machine, which has 1 GPU: .*--nproc-per-node 1"):
        distributed.start("auto")
