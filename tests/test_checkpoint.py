import json
import os
import pickle
import struct

import pytest
import torch

from textvae.data.tokenizer import CharTokenizer
from textvae.io import checkpoint
from textvae.io.checkpoint import CheckpointError
from textvae.model.vae import TextVAE
from textvae.settings import ModelConfig


def _model(cell="gru"):
    tok = CharTokenizer.fit(["hello world", "goodbye"])
    torch.manual_seed(1)
    return TextVAE(ModelConfig(tok.vocab_size, cell=cell, embed_dim=8, hidden_dim=16, latent_dim=4)).eval(), tok


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_save_load_gives_bit_identical_logits(tmp_path, cell):
    model, tok = _model(cell)
    path = checkpoint.save(tmp_path / "m.safetensors", model, tok, progress={"note": "x"})
    loaded, tok2, _, _, progress = checkpoint.load(path)
    tokens, lengths = tok.batch(["hello", "good world"])
    a = model(tokens, lengths, sample=False).logits
    b = loaded(tokens, lengths, sample=False).logits
    assert torch.equal(a, b)
    assert tok2.itos == tok.itos and progress == {"note": "x"}


def test_run_directory_resolves_to_its_best_checkpoint(trained_run):
    assert checkpoint.resolve(trained_run).name == "best.safetensors"
    ck = checkpoint.load(trained_run)
    assert ck.train_config["max_steps"] == 40 and ck.run.longest_item > 0
    assert "nll_elbo" in ck.progress["valid"]


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, tok = _model()
    path = checkpoint.save(tmp_path / "m.safetensors", model, tok)
    before = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", broken_save)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, model, tok)
    assert path.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["m.safetensors"]   # no temporary file left behind
    checkpoint.load(path)


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("content", [
    b"",
    b"not a checkpoint at all",
    b"\x00" * 100,
    pickle.dumps({"weights": Payload()}),
])
def test_files_that_are_not_checkpoints_are_refused_clearly(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a textvae checkpoint"):
        checkpoint.load(p)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_and_wrong_version_checkpoints(tmp_path):
    model, tok = _model()
    path = checkpoint.save(tmp_path / "m.safetensors", model, tok)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        checkpoint.load(tmp_path / "cut.safetensors")
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["format_version"] = "99"
    new = json.dumps(header).encode()
    (tmp_path / "v99.safetensors").write_bytes(struct.pack("<Q", len(new)) + new + data[8 + n:])
    with pytest.raises(CheckpointError, match="version"):
        checkpoint.load(tmp_path / "v99.safetensors")


def test_absurd_configuration_is_refused_before_allocating(tmp_path):
    model, tok = _model()
    path = checkpoint.save(tmp_path / "m.safetensors", model, tok)
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    cfg = json.loads(header["__metadata__"]["model_config"])
    cfg.update(hidden_dim=65536, num_layers=64)
    header["__metadata__"]["model_config"] = json.dumps(cfg)
    new = json.dumps(header).encode()
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", len(new)) + new + data[8 + n:])
    with pytest.raises(CheckpointError, match="refusing"):
        checkpoint.load(tmp_path / "huge.safetensors")


def test_directory_without_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path)


def test_a_checkpoint_from_before_run_info_still_loads(tmp_path):
    """Checkpoints written before DataConfig kept the run's settings in one flat `extra` dict."""
    from safetensors.torch import save_file

    import textvae
    model, tok = _model()
    old_extra = {"train_config": {"max_steps": 7, "lr": 0.002}, "corpus": "names.tsv", "valid_corpus": None,
                 "unit": "word", "column": "name", "max_len": 30, "encoding": "utf-8", "errors": "strict",
                 "stream": False, "longest_item": 12, "corpus_md5": "abc", "label_column": None, "labels": None,
                 "decoder_from": None, "textvae_version": "0.1.0", "epoch": 3, "step": 7, "valid": {"nll_elbo": 9.5}}
    metadata = {"format": "textvae-checkpoint", "format_version": "1",
                "model_config": json.dumps(model.config.to_dict()), "tokenizer": json.dumps(tok.to_dict()),
                "extra": json.dumps(old_extra)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "old.safetensors", metadata=metadata)
    ck = checkpoint.load(tmp_path / "old.safetensors")
    assert ck.run.data.unit == "word" and ck.run.data.column == "name" and ck.run.data.max_len == 30
    assert ck.run.longest_item == 12 and ck.run.labels == () and ck.train_config["max_steps"] == 7
    assert ck.progress == {"epoch": 3, "step": 7, "valid": {"nll_elbo": 9.5}}
    m = textvae.load(tmp_path / "old.safetensors")
    assert m.default_max_len == 12 and len(m.generate(3, seed=0)) == 3


@pytest.mark.parametrize("change", ["shape", "missing", "half"])
def test_generate_reads_arrays_unlike_their_configuration_as_the_torch_path_does(tmp_path, change):
    """`textvae generate` reads checkpoints without torch: a tensor of another shape or a missing one still
    gets the one-line refusal of `textvae.load`, and half-precision weights, which numpy's path leaves to
    torch's, still generate."""
    from click.testing import CliRunner
    from safetensors.numpy import load_file, save_file

    from textvae.cli.commands import cli
    model, tok = _model()
    path = checkpoint.save(tmp_path / "m.safetensors", model, tok)
    arrays, meta = load_file(path), checkpoint.read_metadata(path)
    if change == "shape":
        arrays["to_logits.bias"] = arrays["to_logits.bias"][:3].copy()
    elif change == "missing":
        del arrays["decoder.weight_hh_l0"]
    else:
        arrays = {k: v.astype("float16") if v.dtype == "float32" else v for k, v in arrays.items()}
    save_file(arrays, tmp_path / "x.safetensors", metadata=meta)
    r = CliRunner().invoke(cli, ["generate", "-n", "3", "--seed", "1", "--model", str(tmp_path / "x.safetensors")])
    if change == "half":
        assert r.exit_code == 0 and len(r.stdout.splitlines()) == 3, r.output
    else:
        assert r.exit_code == 1 and "does not match its configuration" in r.stderr and "unexpected" not in r.stderr
