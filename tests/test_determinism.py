"""The same config gives the same files whether or not anything was pretrained or cached in this process.

Pretraining the toy CLIP, expanding the shipped weights and building the noise cache each draw from
their own generators; none may consume or reseed the global torch / numpy random state that the
detector's initialisation and the training loop use afterwards (issue 16: the first run on a machine
used to keep 3160 clean samples where every later run kept 3392).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deft_lightning.toy import pretrain as toy_pretrain

TINY_RECIPE = toy_pretrain.PretrainConfig(steps=3, batch_size=8, warmup_steps=1)


def _global_state():
    return torch.random.get_rng_state().clone(), np.random.get_state()


def _assert_unchanged(before) -> None:
    torch_state, np_state = before
    assert torch.equal(torch.random.get_rng_state(), torch_state), "the global torch RNG state changed"
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:], (
        "the global numpy RNG state changed"
    )


def test_pretraining_leaves_the_global_random_state_alone(tmp_path):
    torch.manual_seed(1234)
    np.random.seed(1234)
    before = _global_state()
    toy_pretrain.ensure_pretrained(tmp_path, seed=0, progress=False, config=TINY_RECIPE)
    _assert_unchanged(before)
    # and the weights still depend on the seed alone, not on the caller's state
    torch.manual_seed(99)
    first, _ = toy_pretrain.pretrain(seed=0, config=TINY_RECIPE, progress=False)
    torch.manual_seed(7)
    second, _ = toy_pretrain.pretrain(seed=0, config=TINY_RECIPE, progress=False)
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_cache_builds_leave_the_global_random_state_alone(tmp_path):
    from deft_lightning.data.noise import apply_noise
    from deft_lightning.toy.reader import read_toy
    from deft_lightning.toy import shipped

    torch.manual_seed(5)
    np.random.seed(5)
    before = _global_state()
    data = read_toy(num_train=60, num_test=10)
    for mode in ("sym", "idn"):
        apply_noise(data.train, 10, mode, 0.4, 1, dataset_key="toy-det", cache_dir=tmp_path)
        apply_noise(data.train, 10, mode, 0.4, 1, dataset_key="toy-det", cache_dir=tmp_path)  # warm
    if shipped.SHIPPED_FILE.is_file():
        shipped.resolve_weights(tmp_path)  # cold: expands the shipped weights into the cache
    _assert_unchanged(before)


def _run(tmp_path: Path, name: str, cache: Path) -> Path:
    from conftest import compose

    from deft_lightning.train import train

    cfg = compose([
        "experiment=toy", "dataset.reader.num_train=192", "dataset.reader.num_test=64",
        "debug=fast", "detector.epochs=2", "backbone.epochs=1",
        f"paths.output_dir={tmp_path / name}", f"paths.cache_dir={cache}", "callbacks.progress_bar=false",
    ])
    train(cfg)
    return tmp_path / name


def _metrics(run: Path) -> dict:
    """Every number in the run's summaries, without wall-clock times and paths."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if not any(word in k for word in ("time", "seconds", "dir", "path", "date", "_at"))}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    files = sorted(run.glob("detection/summary.json")) + sorted(run.glob("adaptation/metrics.json"))
    return {str(p.relative_to(run)): strip(json.loads(p.read_text())) for p in files}


def test_a_cold_cache_and_a_warm_cache_give_the_same_files(tmp_path, monkeypatch):
    """The toy experiment, made small, twice on one cache: first empty, then warm.

    The cold run pretrains a (tiny) toy CLIP, builds the noise cache and expands nothing else; the warm
    run finds both. ``deft-toy`` is pointed at the pretrain-on-demand path for this, which is the path
    that used to shift the random state.
    """
    from deft_lightning.models import clip

    monkeypatch.setitem(
        clip.PRETRAINED_TAGS, "deft-toy",
        lambda cache_dir: toy_pretrain.ensure_pretrained(cache_dir, progress=False, config=TINY_RECIPE),
    )
    cache = tmp_path / "cache"
    runs_before = toy_pretrain.PRETRAIN_RUNS
    cold = _run(tmp_path, "cold", cache)
    assert toy_pretrain.PRETRAIN_RUNS == runs_before + 1  # the cold run did pretrain in-process
    assert list((cache / "noise").glob("*.npz")), "the cold run should have built the noise cache"
    warm = _run(tmp_path, "warm", cache)
    assert toy_pretrain.PRETRAIN_RUNS == runs_before + 1  # the warm one reused it

    selection_cold = (cold / "detection" / "selection.csv").read_bytes()
    assert selection_cold == (warm / "detection" / "selection.csv").read_bytes()
    metrics = _metrics(cold)
    assert sorted(metrics) == ["adaptation/metrics.json", "detection/summary.json"], sorted(metrics)
    assert metrics == _metrics(warm)
    for name in ("pred_probs.npy", "online_mask.npy"):
        np.testing.assert_array_equal(np.load(cold / "detection" / name), np.load(warm / "detection" / name))


@pytest.mark.skipif(not (Path(__file__).parents[1] / "src/deft_lightning/toy/weights").is_dir(), reason="no shipped weights")
def test_the_shipped_toy_clip_gives_the_same_files_cold_and_warm(tmp_path):
    """The same with the real ``deft-toy`` tag: the shipped weights are expanded on the cold run only."""
    cache = tmp_path / "cache"
    cold = _run(tmp_path, "cold", cache)
    assert list((cache / "toy_clip").glob("shipped-*/open_clip_model.safetensors"))
    warm = _run(tmp_path, "warm", cache)
    assert (cold / "detection" / "selection.csv").read_bytes() == (warm / "detection" / "selection.csv").read_bytes()
    assert _metrics(cold) == _metrics(warm)
