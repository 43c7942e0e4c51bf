"""The module paths from before the package's parts still import, for one release: each is the module that took its
place (the same object, so a setting changed through the old path changes the new one), and the names they held."""

import importlib

import pytest

import textvae

OLD_NAMES = {   # a few names each old module held, imported through its old path
    "arraystep": ["ArraySteps"], "bench": ["run", "peak_memory_mb"], "checkpoint": ["CheckpointError", "RunInfo", "load", "save"],
    "classifier": ["NgramClassifier"], "config": ["Saved"], "data": ["DataConfig", "DataError", "EncodedItems",
    "read_corpus", "split_valid"], "decode": ["Decoding", "Guided", "beam_search", "decode", "decode_codes",
    "filter_logits", "lerp", "slerp", "threads_for"], "distributed": ["is_main"], "evaluate": ["evaluate_model"],
    "judge": ["KneserNey", "fluency"], "loop": ["decode_codes", "new_seed", "random_stream"], "metrics": ["WordSet",
    "iw_nll"], "model": ["ModelConfig", "TextVAE", "decoder_inputs", "reparameterize"], "objective": ["KLSchedule",
    "elbo_terms"], "options": ["DECODING_OPTIONS"], "output": ["OutputError", "write_file"], "plot": ["read_metrics"],
    "prior": ["WordPrior", "vocabulary"], "render": ["summary_table"], "runs": ["GLOBAL_FREE_BITS", "start",
    "resume"], "sample": ["Sampler", "blocks"], "schedule": ["Plan", "plan"], "tokenizer": ["CharTokenizer",
    "PAD_ID"], "train": ["TrainConfig", "Trainer", "pick_device", "train"], "cli": ["cli", "main"],
    "settings": ["Decoding", "ModelConfig"], "api": ["Model", "load"],
}


@pytest.mark.parametrize("old", sorted(textvae.OLD_PATHS))
def test_an_old_module_path_is_the_module_that_took_its_place(old):
    module = importlib.import_module(f"textvae.{old}")
    assert module is importlib.import_module(f"textvae.{textvae.OLD_PATHS[old]}")
    assert module.__spec__.name == f"textvae.{textvae.OLD_PATHS[old]}"


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_the_names_an_old_module_held_import_from_its_path(old):
    module = importlib.import_module(f"textvae.{old}")
    for name in OLD_NAMES[old]:
        assert getattr(module, name) is not None, f"textvae.{old}.{name}"


def test_a_setting_changed_through_an_old_path_is_changed_where_it_is_read():
    import textvae.runs as old

    from textvae.training import run
    before = run.GLOBAL_FREE_BITS
    try:
        old.GLOBAL_FREE_BITS = 0.5
        assert run.GLOBAL_FREE_BITS == 0.5
    finally:
        old.GLOBAL_FREE_BITS = before


def test_old_paths_cover_every_module_the_package_had():
    before = {"api", "arraystep", "bench", "checkpoint", "classifier", "cli", "config", "data", "decode",
              "distributed", "evaluate", "judge", "loop", "metrics", "model", "objective", "options", "output", "plot",
              "prior", "render", "runs", "sample", "schedule", "settings", "tokenizer", "train"}
    assert before == set(textvae.OLD_PATHS) | {"api", "cli", "data", "model", "settings"}
