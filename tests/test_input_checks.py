"""Inputs checked before hours are spent: listed files exist, unreadable images are named (or skipped),
CSV labels that would give a wrong class count are refused, and errors name the file."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures.datasets import (
    add_bad_images,
    make_clothing1m,
    make_csv,
    make_cub200,
    make_imagefolder,
    make_imagenet_val,
    make_tiny_imagenet,
    make_webvision,
    write_image,
)

from deft_lightning.data.base import DatasetError
from deft_lightning.data.datamodule import NoisyLabelDataModule
from deft_lightning.data.image_io import find_bad_images, image_problem
from deft_lightning.data.readers import _common
from deft_lightning.data.readers.clothing1m import read_clothing1m
from deft_lightning.data.readers.fine_grained import read_cub200, read_tiny_imagenet
from deft_lightning.data.readers.user import read_csv, read_imagefolder
from deft_lightning.data.readers.webvision import read_webvision
from deft_lightning.errors import ConfigError
from deft_lightning.models.inputs import InputConfig

REPO_SRC = Path(__file__).resolve().parents[1] / "src"


# ----- every listed file exists -------------------------------------------------------------------


@pytest.mark.parametrize("scan_min", [1, 10**9])  # one listing per folder / one stat per file
def test_missing_files_both_strategies(tmp_path, monkeypatch, scan_min):
    monkeypatch.setattr(_common, "SCAN_MIN_FILES", scan_min)
    (tmp_path / "a").mkdir()
    for name in ("x.jpg", "y.jpg"):
        (tmp_path / "a" / name).write_bytes(b"1")
    (tmp_path / "a" / "dir.jpg").mkdir()  # a folder is not an image file
    paths = [str(tmp_path / p) for p in ("a/x.jpg", "a/gone.jpg", "a/y.jpg", "a/dir.jpg", "nowhere/z.jpg")]
    assert _common.missing_files(paths) == [1, 3, 4]
    assert _common.missing_files(paths[:1] + paths[2:3]) == []


def _remove(root: Path, rel: str) -> Path:
    path = root / rel
    path.unlink()
    return path


def test_clothing1m_names_missing_images_and_their_count(tmp_path):
    root = make_clothing1m(tmp_path)
    first = (root / "noisy_train_key_list.txt").read_text().split()
    gone = [_remove(root, first[3]), _remove(root, first[10])]
    with pytest.raises(DatasetError) as err:
        read_clothing1m(root, subset_size=None)
    text = str(err.value)
    assert f"2 of {len(first)} Clothing1M images" in text and "noisy_train_key_list.txt" in text
    assert str(gone[0]) in text and str(gone[1]) in text


def test_clothing1m_checks_the_whole_list_not_only_the_subset(tmp_path):
    root = make_clothing1m(tmp_path)
    keys = (root / "noisy_train_key_list.txt").read_text().split()
    drawn = set(read_clothing1m(root, subset_size=14, subset_seed=0).train.sample_ids)
    outside = next(k for k in keys if k not in drawn)
    _remove(root, outside)
    with pytest.raises(DatasetError, match=f"1 of {len(keys)} Clothing1M images"):
        read_clothing1m(root, subset_size=14, subset_seed=0)


def test_clothing1m_test_list_is_checked(tmp_path):
    root = make_clothing1m(tmp_path)
    key = (root / "clean_test_key_list.txt").read_text().split()[-1]
    _remove(root, key)
    with pytest.raises(DatasetError, match=r"1 of 14 Clothing1M images listed in .*clean_test_key_list\.txt"):
        read_clothing1m(root)


def test_many_missing_show_five_and_the_rest_as_a_count(tmp_path):
    root = make_clothing1m(tmp_path)
    keys = (root / "noisy_train_key_list.txt").read_text().split()
    for key in keys[:9]:
        _remove(root, key)
    with pytest.raises(DatasetError, match=r"(?s)9 of 56 .*\.\.\. and 4 more"):
        read_clothing1m(root)


def test_webvision_imagenet_tiny_cub_name_missing_images(tmp_path):
    root = make_webvision(tmp_path / "wv")
    gone = _remove(root, "google/q0050/0000001.jpg")
    with pytest.raises(DatasetError, match=r"1 of 8 WebVision training images listed in .*train_filelist_google\.txt"):
        read_webvision(root)
    write_image(gone, 1)
    val = sorted((root / "val_images_256").iterdir())[0]
    val.unlink()
    with pytest.raises(DatasetError, match=rf"(?s)val_filelist\.txt.*{val.name}"):
        read_webvision(root)
    write_image(val, 2)

    imagenet = make_imagenet_val(tmp_path / "imagenet")
    (imagenet / "val" / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(DatasetError, match=r"ImageNet validation images listed in .*LOC_val_solution\.csv"):
        read_webvision(root, imagenet_root=imagenet)

    tiny = make_tiny_imagenet(tmp_path / "tiny")
    _remove(tiny, "tiny-imagenet-200/val/images/val_3.JPEG")
    with pytest.raises(DatasetError, match=r"(?s)1 of 6 .*val_annotations\.txt.*val_3\.JPEG"):
        read_tiny_imagenet(tiny)

    cub = make_cub200(tmp_path / "cub")
    rel = (cub / "CUB_200_2011" / "images.txt").read_text().split("\n")[4].split()[1]
    _remove(cub / "CUB_200_2011" / "images", rel)
    with pytest.raises(DatasetError, match=r"1 of 9 CUB images listed in .*images\.txt"):
        read_cub200(cub)


def test_csv_missing_images_name_their_lines(tmp_path):
    root = make_csv(tmp_path)
    (root / "images" / "banana" / "001.png").unlink()
    (root / "images" / "apple" / "003.png").unlink()
    with pytest.raises(DatasetError) as err:
        read_csv(root)
    text = str(err.value)
    assert "2 of 12 listed images do not exist" in text and "line 3:" in text and "line 5:" in text


# ----- on_bad_image --------------------------------------------------------------------------------


def _datamodule(root: Path, tmp_path: Path, on_bad_image: str = "error", mode: str = "sym") -> NoisyLabelDataModule:
    return NoisyLabelDataModule(
        reader=read_imagefolder,
        root=str(root),
        dataset_name="imagefolder",
        noise={"mode": mode, "ratio": 0.4, "seed": 0},
        batch_size=4,
        cache_dir=str(tmp_path / "cache"),
        on_bad_image=on_bad_image,
    )


def test_image_problem_kinds(tmp_path):
    bad = add_bad_images(tmp_path / "c")
    good = write_image(tmp_path / "ok.jpg", 0, (32, 32))
    assert image_problem(str(good)) is None and image_problem(str(good), decode=True) is None
    assert "0 bytes" in image_problem(str(bad["empty"]))
    assert "not an image" in image_problem(str(bad["not_image"]))
    assert image_problem(str(bad["truncated"])) is None  # the header is intact: only decoding finds it
    assert "truncated" in image_problem(str(bad["truncated"]), decode=True)
    assert "cannot be opened" in image_problem(str(tmp_path / "missing.jpg"))


def test_on_bad_image_error_names_the_files_before_training_and_writes_no_cache(tmp_path):
    root = make_imagefolder(tmp_path / "data")
    bad = add_bad_images(root / "train" / "dog")
    dm = _datamodule(root, tmp_path)
    with pytest.raises(DatasetError) as err:
        dm.load()
    text = str(err.value)
    assert "2 unreadable image(s)" in text and str(bad["empty"]) in text and str(bad["not_image"]) in text
    assert "data.on_bad_image=skip" in text and str(bad["truncated"]) not in text
    assert dm.files is None and not (tmp_path / "cache").exists()  # nothing half-done, no noise cache


def test_on_bad_image_skip_is_deterministic_and_recorded(tmp_path):
    root = make_imagefolder(tmp_path / "data")
    bad = add_bad_images(root / "train" / "dog")
    (root / "test" / "cat" / "cat_0.jpg").write_bytes(b"")
    first, second = _datamodule(root, tmp_path, "skip").load(), _datamodule(root, tmp_path, "skip").load()
    clean = read_imagefolder(root)
    assert first.num_train == len(clean.train) - 2  # the truncated file passes the cheap check
    skipped = {(f["split"], Path(f["path"]).name) for f in first.skipped_files}
    assert skipped == {("train", bad["empty"].name), ("train", bad["not_image"].name), ("test", "cat_0.jpg")}
    assert all(f["reason"] and f["sample_id"] for f in first.skipped_files)
    assert first.files.train.sample_ids == second.files.train.sample_ids
    np.testing.assert_array_equal(first.given_labels, second.given_labels)  # noise applied to what remains
    assert len(first.files.test["test"]) == len(clean.test["test"]) - 1
    assert not any(p.endswith(("zz_empty.png", "zz_not_an_image.jpg")) for p in first.files.train.paths)


def test_on_bad_image_skip_refuses_a_per_index_label_file(tmp_path):
    root = make_imagefolder(tmp_path / "data")
    add_bad_images(root / "train" / "dog")
    labels = tmp_path / "labels.txt"
    labels.write_text("0\n" * 15)
    dm = NoisyLabelDataModule(
        reader=read_imagefolder, root=str(root), dataset_name="imagefolder",
        noise={"mode": "real", "ratio": 0.0, "seed": 0, "label_file": str(labels)}, on_bad_image="skip",
    )  # fmt: skip
    with pytest.raises(DatasetError, match="noise.label_file"):
        dm.load()


def test_on_bad_image_value_is_checked():
    with pytest.raises(ConfigError, match="data.on_bad_image='ignore'"):
        NoisyLabelDataModule(reader=read_imagefolder, root=None, dataset_name="x", noise={}, on_bad_image="ignore")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_image_failing_mid_epoch_is_a_dataset_error_naming_it(tmp_path, num_workers):
    root = make_imagefolder(tmp_path / "data")
    bad = add_bad_images(root / "train" / "dog")
    bad["empty"].unlink()
    bad["not_image"].unlink()
    dm = _datamodule(root, tmp_path, mode="none")
    dm.num_workers, dm.persistent_workers = num_workers, False
    dm.configure_inputs(InputConfig(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    with pytest.raises(DatasetError) as err:
        for _ in dm.inference_dataloader():
            pass
    text = str(err.value)
    assert str(bad["truncated"]) in text and "--verify-images" in text
    assert "Traceback" not in text and 'File "' not in text  # the worker's traceback is not in the message


# ----- CSV labels ------------------------------------------------------------------------------------


def _write_csv(root: Path, rows: list[tuple[str, str]], encoding: str = "utf-8") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k, (rel, _) in enumerate(rows):
        if not (root / rel).exists():
            write_image(root / rel, k)
    with open(root / "labels.csv", "w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return root


def test_csv_typo_label_leaving_empty_classes_is_an_error(tmp_path):
    rows = [(f"img/{k}.png", str(k % 3)) for k in range(6)] + [("img/typo.png", "99")]
    root = _write_csv(tmp_path, rows)
    with pytest.raises(DatasetError) as err:
        read_csv(root)
    text = str(err.value)
    assert "100 classes" in text and "96 of them have no sample" in text and "class ids 3-98" in text
    assert "dataset.num_classes" in text
    # declared, the count is the user's: 100 classes, no error
    assert read_csv(root, num_classes=100).num_classes == 100
    assert read_csv(root, class_names=[f"c{i}" for i in range(100)]).class_names[99] == "c99"


def test_csv_class_count_from_num_classes_or_class_names(tmp_path):
    root = make_csv(tmp_path, labels_as="index")
    assert read_csv(root, num_classes=5).num_classes == 5
    assert read_csv(root).num_classes == 3
    with pytest.raises(DatasetError, match="dataset.num_classes=2 but class_names lists 3"):
        read_csv(root, num_classes=2, class_names=["a", "b", "c"])
    with pytest.raises(DatasetError, match=r"label 2 is outside \[0, 1\]"):
        read_csv(root, num_classes=2)
    names = tmp_path / "names.txt"
    names.write_text("apple\nbanana\ncherry\n")
    assert read_csv(root, class_names=str(names)).class_names == ["apple", "banana", "cherry"]
    named = make_csv(tmp_path / "named")
    with pytest.raises(DatasetError, match="name 3 classes but dataset.num_classes=4"):
        read_csv(named, num_classes=4)


def test_csv_labels_differing_by_case_or_spaces_are_reported(tmp_path):
    rows = [("a/1.png", "Cat"), ("a/2.png", "cat"), ("a/3.png", "dog"), ("a/4.png", "golden  retriever"),
            ("a/5.png", "golden retriever")]  # fmt: skip
    root = _write_csv(tmp_path, rows)
    with pytest.raises(DatasetError) as err:
        read_csv(root)
    text = str(err.value)
    assert "2 group(s)" in text and "'Cat' / 'cat'" in text and "'golden  retriever' / 'golden retriever'" in text
    # listing the classes keeps them apart on purpose
    names = ["Cat", "cat", "dog", "golden  retriever", "golden retriever"]
    assert read_csv(root, class_names=names).num_classes == 5


def test_csv_encoding_error_names_the_file_and_the_option(tmp_path):
    rows = [("img/a.png", "café"), ("img/b.png", "thé")]
    root = _write_csv(tmp_path, rows, encoding="latin-1")
    with pytest.raises(DatasetError) as err:
        read_csv(root)
    text = str(err.value)
    assert str(root / "labels.csv") in text and "line 2" in text and "dataset.reader.encoding=latin-1" in text
    assert read_csv(root, encoding="latin-1").class_names == ["café", "thé"]
    with pytest.raises(DatasetError, match="not a known text encoding"):
        read_csv(root, encoding="klingon-8")


def test_csv_errors_through_inspect_data_exit_2_without_traceback(tmp_path):
    rows = [(f"img/{k}.png", str(k % 2)) for k in range(4)] + [("img/x.png", "7")]
    root = _write_csv(tmp_path / "data", rows)
    env = {**os.environ, "PYTHONPATH": str(REPO_SRC), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "deft_lightning.inspect_data", "dataset=csv", f"dataset.root={root}",
           f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "class ids 2-6" in bad.stderr and "Traceback" not in bad.stderr
    ok = subprocess.run([*cmd, "dataset.num_classes=8"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "csv (8 classes" in ok.stdout
    assert not (tmp_path / "cache" / "noise").exists() or list((tmp_path / "cache" / "noise").iterdir()) == []


def test_find_bad_images_in_a_process_pool_matches_serial(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.jpg", i, (16, 16))) for i in range(70)]
    bad = add_bad_images(tmp_path / "bad")
    paths[5], paths[40], paths[66] = str(bad["truncated"]), str(bad["empty"]), str(bad["not_image"])
    serial = find_bad_images(paths, decode=True, workers=1)
    pooled = find_bad_images(paths, decode=True, workers=2)
    assert [i for i, _ in serial] == [5, 40, 66] and pooled == serial


def test_undecodable_or_unreadable_list_files_name_the_file(tmp_path):
    root = make_clothing1m(tmp_path / "c1m")
    names = root / "category_names_eng.txt"
    names.write_bytes(names.read_bytes().replace(b"Suit", b"Su\xefte"))  # Latin-1 bytes in a UTF-8 list
    with pytest.raises(DatasetError, match=r"category_names_eng\.txt, line 10: not UTF-8 text"):
        read_clothing1m(root)
    wv = make_webvision(tmp_path / "wv")
    listing = wv / "info" / "val_filelist.txt"
    listing.unlink()
    listing.mkdir()  # a folder where the list should be
    with pytest.raises(DatasetError, match=r"Cannot read the WebVision validation list .*val_filelist\.txt"):
        read_webvision(wv)


def test_on_bad_image_skip_records_the_skipped_files_in_the_run(tmp_path):
    """``data.on_bad_image=skip`` through the real entry point: the run writes RUN/skipped_images.json."""
    import json

    from conftest import compose
    from deft_lightning.detect import detect

    root = make_imagefolder(tmp_path / "data")
    bad = add_bad_images(root / "train" / "dog")
    bad["truncated"].unlink()  # it passes the cheap check and would stop the run at its decode (tested above)
    run = tmp_path / "run"
    detect(compose(["experiment=demo", "dataset=imagefolder", f"dataset.root={root}", "noise=none",
                    "detector=label_match", "dataset.batch_size=4", "data.on_bad_image=skip",
                    f"paths.output_dir={run}", f"paths.cache_dir={tmp_path / 'cache'}",
                    "callbacks.progress_bar=false"], config_name="detect"))
    record = json.loads((run / "skipped_images.json").read_text())
    assert record["count"] == 2 and {Path(f["path"]).name for f in record["files"]} == {
        bad["empty"].name, bad["not_image"].name}
