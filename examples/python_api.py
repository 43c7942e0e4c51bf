"""The Python API in a few lines: train a small model, then sample, encode and interpolate.

    python examples/python_api.py            # about a minute on 2 CPU cores
"""

from pathlib import Path

import torch

import textvae
from textvae.data.corpus import read_corpus, split_valid
from textvae.data.items import EncodedItems
from textvae.data.tokenizer import CharTokenizer
from textvae.io.checkpoint import RunInfo
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig, TrainConfig
from textvae.training.trainer import train

here = Path(__file__).resolve().parent.parent
run_dir = here / "runs" / "example_names"

# 1. Train: read a corpus, fit the vocabulary, build a model, run the loop (it yields events).
corpus = read_corpus(str(here / "corpora" / "names_en" / "train.txt"))
train_items, valid_items = split_valid(corpus.items)
tokenizer = CharTokenizer.fit(train_items)
torch.manual_seed(0)
model = TextVAE(ModelConfig(vocab_size=tokenizer.vocab_size, cell="lstm"))
config = TrainConfig(epochs=3, batch_size=128)
for event in train(model, tokenizer, EncodedItems(train_items, tokenizer), EncodedItems(valid_items, tokenizer),
                   config, run_dir, RunInfo(longest_item=max(map(len, train_items)))):
    if event["event"] == "valid":
        print(f"epoch {event['epoch']}: -ELBO {event['nll_elbo']:.2f} nats/item, KL {event['kl']:.2f}, "
              f"exact reconstruction {event['exact']:.0%}")

# 2. Use it: everything needed is in the checkpoint.
m = textvae.load(run_dir)
print("samples:      ", m.generate(8, temperature=0.8, seed=1))
print("reconstructed:", m.reconstruct(["emma", "oliver", "zebulon"]))
print("codes:        ", m.encode(["emma", "oliver"]).shape)
for text in m.interpolate("emma", "oliver", steps=6):
    print("  ", text)
