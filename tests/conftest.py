import random
from pathlib import Path

import pytest
import torch
from words import TINY_MODEL, WORDS

from textvae.data.items import EncodedItems
from textvae.data.tokenizer import CharTokenizer
from textvae.io.checkpoint import RunInfo
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig, TrainConfig
from textvae.training.trainer import train

# The tests' models are tiny: one thread runs them fastest, and never fights another process for the cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A few hundred made-up words, one per line, with a blank line and CRLF endings mixed in."""
    rng = random.Random(0)
    items = [rng.choice(WORDS) + rng.choice(["", "s", "ed", "ing", "er"]) for _ in range(300)]
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    body = "\n".join(items[:150]) + "\n\n" + "\r\n".join(items[150:]) + "\n"
    path.write_bytes(body.encode("utf-8"))
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_corpus) -> Path:
    """A tiny model trained for a few steps through the library (not the CLI)."""
    items = [line.strip() for line in tiny_corpus.read_text().splitlines() if line.strip()]
    tok = CharTokenizer.fit(items)
    torch.manual_seed(0)
    model = TextVAE(ModelConfig(vocab_size=tok.vocab_size, **TINY_MODEL))
    run_dir = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(max_steps=40, batch_size=32, kl_warmup=20, recon_items=50, device="cpu", free_bits=0.5)
    events = list(train(model, tok, EncodedItems(items[:250], tok), EncodedItems(items[250:], tok), cfg, run_dir,
                        run=RunInfo(longest_item=max(map(len, items)))))
    assert events[-1]["event"] == "done"
    return run_dir
