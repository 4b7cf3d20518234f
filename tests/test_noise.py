"""Noise models: rates, structure, determinism, caching, real labels and bad input."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from fixtures.datasets import write_image

from deft_lightning.data import noise as noise_module
from deft_lightning.data.base import DatasetError, Split
from deft_lightning.data.noise import apply_noise, read_label_file

CIFAR100N_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar100n" / "CIFAR-100_human.pt"


def memory_split(n: int, num_classes: int, seed: int = 0, side: int = 32) -> Split:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    return Split(clean_labels=np.arange(n) % num_classes, images=images)


def noise(split: Split, num_classes: int, mode: str, ratio: float, seed: int = 1, **kw):
    return apply_noise(split, num_classes, mode, ratio, seed, dataset_key="test", **kw)


def test_none_keeps_labels():
    split = memory_split(50, 5)
    result = noise(split, 5, "none", 0.0)
    # the labels are kept as given, and nothing claims to know whether they are true (issue 14 item 1)
    assert np.array_equal(result.given, split.clean_labels)
    assert result.true is None and result.realised_rate is None and result.transition is None


def test_none_without_clean_labels_uses_the_dataset_labels():
    split = Split(noisy_labels=np.array([1, 0, 1]), paths=["a", "b", "c"])
    result = noise(split, 2, "none", 0.0)
    assert result.given.tolist() == [1, 0, 1] and result.true is None and result.realised_rate is None


def test_sym_rate_is_r_times_one_minus_one_over_c():
    split = Split(clean_labels=np.arange(20000) % 10, paths=[""] * 20000)
    result = noise(split, 10, "sym", 0.4)
    assert result.realised_rate == pytest.approx(0.4 * (1 - 1 / 10), abs=0.01)
    assert np.allclose(result.transition.sum(axis=1), 1.0)
    off_diagonal = result.transition[~np.eye(10, dtype=bool)]
    assert off_diagonal.min() > 0.02  # uniform over all classes


def test_asym_flips_exactly_floor_rn_to_the_next_class():
    split = Split(clean_labels=np.arange(1001) % 7, paths=[""] * 1001)
    result = noise(split, 7, "asym", 0.3)
    changed = result.given != result.true
    assert changed.sum() == int(np.floor(0.3 * 1001))
    assert np.array_equal(result.given[changed], (result.true[changed] + 1) % 7)


def test_idn_mean_flip_rate_is_r():
    split = memory_split(4000, 10, seed=0)
    result = noise(split, 10, "idn", 0.3)
    assert result.realised_rate == pytest.approx(0.3, abs=0.025)


def test_idn_flips_depend_on_the_image():
    """Identical images of a class flip to the same class; different images spread over classes."""
    n, num_classes, prototypes = 3000, 5, 6
    rng = np.random.default_rng(1)
    protos = rng.integers(0, 256, size=(prototypes, 32, 32, 3), dtype=np.uint8)
    which = np.arange(n) % prototypes
    labels = (np.arange(n) // prototypes) % num_classes
    split = Split(clean_labels=labels, images=protos[which])
    result = noise(split, num_classes, "idn", 0.4)
    flipped = result.given != labels
    targets_per_group = {}
    for i in np.flatnonzero(flipped):
        targets_per_group.setdefault((which[i], labels[i]), set()).add(int(result.given[i]))
    assert all(len(t) == 1 for t in targets_per_group.values())
    for c in range(num_classes):  # but the class as a whole flips to several classes
        assert len({int(result.given[i]) for i in np.flatnonzero(flipped & (labels == c))}) > 1


def test_idn_on_image_files_resized_to_32(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.jpg", i, size=(40 + i, 30))) for i in range(12)]
    split = Split(clean_labels=np.arange(12) % 3, paths=paths)
    a = noise(split, 3, "idn", 0.5)
    b = noise(split, 3, "idn", 0.5)
    assert np.array_equal(a.given, b.given) and a.given.shape == (12,)


@pytest.mark.parametrize("mode", ["sym", "asym", "idn"])
def test_same_seed_same_labels_different_seed_different(mode):
    split = memory_split(600, 10)
    a = noise(split, 10, mode, 0.4, seed=1)
    b = noise(split, 10, mode, 0.4, seed=1)
    c = noise(split, 10, mode, 0.4, seed=2)
    assert np.array_equal(a.given, b.given)
    assert not np.array_equal(a.given, c.given)


def test_global_rng_state_is_irrelevant():
    split = memory_split(300, 10)
    np.random.seed(0)
    a = noise(split, 10, "sym", 0.5)
    np.random.seed(123)
    np.random.random(10)
    b = noise(split, 10, "sym", 0.5)
    assert np.array_equal(a.given, b.given)


def test_pure_function_across_processes():
    split = memory_split(400, 10)
    args = (split, 10, "idn", 0.3, 7)
    kwargs = {"dataset_key": "test"}
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = [pool.apply_async(apply_noise, args, kwargs) for _ in range(2)]
        remote = [r.get(timeout=120) for r in results]
    local = apply_noise(*args, **kwargs)
    for other in remote:
        assert np.array_equal(other.given, local.given)


def test_ratio_zero_changes_nothing():
    split = memory_split(100, 10)
    for mode in ("sym", "asym", "idn"):
        assert noise(split, 10, mode, 0.0).realised_rate == 0.0


def test_summary_is_json_able():
    result = noise(memory_split(100, 10), 10, "sym", 0.4)
    summary = json.loads(json.dumps(result.summary()))
    assert summary["mode"] == "sym" and summary["num_samples"] == 100
    assert summary["realised_rate"] == pytest.approx(result.realised_rate) and "transition" not in summary


# ----- cache --------------------------------------------------------------------------------------


def test_cache_written_once_keyed_and_reused(tmp_path, monkeypatch):
    split = memory_split(200, 10)
    first = noise(split, 10, "idn", 0.3, seed=4, cache_dir=tmp_path)
    files = list((tmp_path / "noise").iterdir())
    assert len(files) == 1
    name = files[0].name
    assert name.startswith("test__idn_r0.3_s4_") and name.endswith(".npz")

    def fail(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(noise_module, "instance_dependent", fail)
    again = noise(split, 10, "idn", 0.3, seed=4, cache_dir=tmp_path)
    assert np.array_equal(first.given, again.given) and again.realised_rate == first.realised_rate


def test_cache_key_changes_with_labels_seed_and_ratio(tmp_path):
    split = memory_split(200, 10)
    noise(split, 10, "sym", 0.3, seed=1, cache_dir=tmp_path)
    noise(split, 10, "sym", 0.3, seed=2, cache_dir=tmp_path)
    noise(split, 10, "sym", 0.2, seed=1, cache_dir=tmp_path)
    changed = Split(clean_labels=(split.clean_labels + 1) % 10, images=split.images)
    result = noise(changed, 10, "sym", 0.3, seed=1, cache_dir=tmp_path)
    assert len(list((tmp_path / "noise").glob("*.npz"))) == 4
    assert np.array_equal(result.true, changed.clean_labels)


def test_corrupt_cache_file_is_recomputed(tmp_path):
    split = memory_split(100, 10)
    first = noise(split, 10, "sym", 0.5, cache_dir=tmp_path)
    (path,) = (tmp_path / "noise").iterdir()
    path.write_bytes(b"garbage")
    assert np.array_equal(noise(split, 10, "sym", 0.5, cache_dir=tmp_path).given, first.given)


# ----- bad input: clear errors, nothing in the cache -------------------------------------------------


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, "lots"])
def test_ratio_outside_unit_interval(tmp_path, ratio):
    with pytest.raises(DatasetError, match=f"noise.ratio={ratio!r}.*expected a number in \\[0, 1\\)"):
        noise(memory_split(20, 5), 5, "sym", ratio, cache_dir=tmp_path)
    assert not any(tmp_path.rglob("*"))


def test_unknown_mode_lists_valid_ones(tmp_path):
    with pytest.raises(DatasetError, match="'flip'.*none, sym, asym, idn, real"):
        noise(memory_split(20, 5), 5, "flip", 0.2, cache_dir=tmp_path)


def test_unreadable_image_during_idn_writes_nothing(tmp_path):
    paths = [str(write_image(tmp_path / "img" / f"{i}.jpg", i)) for i in range(6)]
    Path(paths[4]).write_bytes(b"broken")
    split = Split(clean_labels=np.arange(6) % 2, paths=paths)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="4.jpg"):
        noise(split, 2, "idn", 0.3, cache_dir=cache)
    assert not cache.exists() or not any(cache.rglob("*"))


def test_synthetic_noise_needs_clean_labels():
    split = Split(noisy_labels=np.array([0, 1]), paths=["a", "b"])
    with pytest.raises(DatasetError, match="noise=real or noise=none"):
        noise(split, 2, "sym", 0.2)


# ----- real noise ---------------------------------------------------------------------------------


def test_real_uses_the_dataset_noisy_labels():
    split = Split(clean_labels=np.array([0, 1, 2, 3]), noisy_labels=np.array([0, 2, 2, 0]), paths=[""] * 4)
    result = noise(split, 4, "real", 0.0)
    assert result.given.tolist() == [0, 2, 2, 0] and result.realised_rate == 0.5
    assert result.transition[1].tolist() == [0, 0, 1, 0]


def test_real_without_noisy_labels_says_how_to_give_them():
    with pytest.raises(DatasetError, match="noise.label_file"):
        noise(memory_split(10, 5), 5, "real", 0.0)


@pytest.mark.parametrize(
    ("name", "content"),
    [("labels.npy", None), ("labels.txt", "1\n0\n4\n2\n"), ("labels.csv", "index,label\n2,4\n0,1\n1,0\n3,2\n")],
)
def test_real_from_a_user_label_file(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        np.save(path, np.array([1, 0, 4, 2]))
    else:
        path.write_text(content)
    split = Split(clean_labels=np.array([1, 1, 4, 2]), paths=[""] * 4)
    result = noise(split, 5, "real", 0.0, label_file=path)
    assert result.given.tolist() == [1, 0, 4, 2] and result.realised_rate == 0.25


def test_label_file_errors_name_file_and_value(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("1\n2\n")
    with pytest.raises(DatasetError, match="short.txt: has 2 labels, expected 4"):
        read_label_file(short, 4, 5)
    big = tmp_path / "big.csv"
    big.write_text("0\n1\n7\n2\n")
    with pytest.raises(DatasetError, match=r"big.csv, line 3: label 7 is outside \[0, 5\)"):
        read_label_file(big, 4, 5)
    with pytest.raises(DatasetError, match="missing.npy not found"):
        read_label_file(tmp_path / "missing.npy", 4, 5)


@pytest.mark.skipif(not CIFAR100N_FILE.is_file(), reason="real CIFAR-100N label file not available")
def test_real_cifar100n_file_has_40_2_percent_noise():
    from deft_lightning.data.readers.cifar import load_cifar100n_labels

    data = load_cifar100n_labels(CIFAR100N_FILE)
    clean = np.asarray(data["clean_label"])
    split = Split(
        clean_labels=clean,
        noisy_labels=np.asarray(data["noisy_label"]),
        images=np.zeros((len(clean), 1, 1, 3), np.uint8),
    )
    result = apply_noise(split, 100, "real", 0.0, 1, dataset_key="cifar100n")
    assert len(result.given) == 50000
    assert round(result.realised_rate, 3) == 0.402
