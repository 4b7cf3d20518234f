"""Readers on tiny fixture trees in the official layouts: counts, labels, class names, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.datasets import (
    CARS_CLASSES,
    CLOTHING1M_NAMES,
    make_cifar10,
    make_cifar100,
    make_cifar100n,
    make_clothing1m,
    make_csv,
    make_cub200,
    make_imagefolder,
    make_imagenet_val,
    make_stanford_cars,
    make_tiny_imagenet,
    make_webvision,
    write_image,
)
from PIL import Image

from deft_lightning.data.base import DatasetError
from deft_lightning.data.image_io import load_rgb
from deft_lightning.data.readers import READERS
from deft_lightning.data.readers.cifar import read_cifar10, read_cifar100, read_cifar100n
from deft_lightning.data.readers.clothing1m import balanced_subset, read_clothing1m
from deft_lightning.data.readers.fine_grained import read_cub200, read_stanford_cars, read_tiny_imagenet
from deft_lightning.data.readers.user import read_csv, read_imagefolder
from deft_lightning.data.readers.webvision import read_webvision

FILE_DATASETS = [
    "cifar10",
    "cifar100",
    "cifar100n",
    "tiny_imagenet",
    "stanford_cars",
    "cub200",
    "clothing1m",
    "webvision",
    "imagefolder",
    "csv",
]


def test_registry_lists_every_dataset():
    assert set(FILE_DATASETS) <= set(READERS)


# ----- CIFAR ----------------------------------------------------------------------------------------


def test_cifar100_reads_official_pickles(tmp_path):
    files = read_cifar100(make_cifar100(tmp_path, n_train=40, n_test=20))
    assert files.num_classes == 100 and files.class_names[:3] == ["apple", "aquarium_fish", "baby"]
    assert files.family == "cifar" and list(files.test) == ["test"]
    assert files.train.images.shape == (40, 32, 32, 3) and files.train.images.dtype == np.uint8
    assert files.train.clean_labels.tolist() == [(i * 7 + 1) % 100 for i in range(40)]
    assert len(files.test["test"]) == 20 and files.train.noisy_labels is None
    # channel-planar rows -> HWC: pixel (0, 0) of image 0 is (R, G, B) = row[0], row[1024], row[2048]
    with open(tmp_path / "cifar-100-python" / "train", "rb") as fh:
        import pickle

        row = pickle.load(fh, encoding="bytes")[b"data"][0]
    assert files.train.images[0, 0, 0].tolist() == [row[0], row[1024], row[2048]]


def test_cifar100_accepts_the_pickle_folder_itself(tmp_path):
    make_cifar100(tmp_path)
    assert len(read_cifar100(tmp_path / "cifar-100-python").train) == 40


def test_cifar10_reads_five_batches(tmp_path):
    files = read_cifar10(make_cifar10(tmp_path, per_batch=6, n_test=10))
    assert files.num_classes == 10 and files.class_names[0] == "airplane"
    assert len(files.train) == 30 and len(files.test["test"]) == 10
    assert files.train.clean_labels[:6].tolist() == [(i + 1) % 10 for i in range(6)]


def test_cifar_pickle_with_foreign_code_is_refused(tmp_path):
    import pickle

    make_cifar100(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "cifar-100-python" / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": Evil()}, fh)
    with pytest.raises(DatasetError, match="meta"):
        read_cifar100(tmp_path)


def test_cifar100n_attaches_human_noisy_labels(tmp_path):
    files = read_cifar100n(make_cifar100n(tmp_path, n_train=40, flip_every=4))
    assert files.name == "cifar100n" and len(files.train) == 40
    changed = files.train.noisy_labels != files.train.clean_labels
    assert changed.sum() == 10 and changed[::4].all()


def test_cifar100n_rejects_a_label_file_for_other_images(tmp_path):
    import torch

    make_cifar100n(tmp_path, n_train=40)
    data = {"clean_label": np.zeros(40, dtype=np.int64), "noisy_label": np.zeros(40, dtype=np.int64)}
    torch.save(data, tmp_path / "CIFAR-100_human.pt")
    with pytest.raises(DatasetError, match="clean_label differs"):
        read_cifar100n(tmp_path)


def test_cifar100n_missing_label_file_names_it(tmp_path):
    make_cifar100(tmp_path)
    with pytest.raises(DatasetError, match="CIFAR-100_human.pt"):
        read_cifar100n(tmp_path)


# ----- fine-grained -------------------------------------------------------------------------------


def test_tiny_imagenet_official_layout(tmp_path):
    files = read_tiny_imagenet(make_tiny_imagenet(tmp_path, per_class=3, val_per_class=2))
    # classes are the sorted wnids, named by the first synonym in words.txt
    assert files.class_names == ["goldfish", "European fire salamander", "Egyptian cat"]
    assert len(files.train) == 9 and len(files.test["test"]) == 6
    assert files.train.sample_ids[0] == "train/n01443537/images/n01443537_0.JPEG"
    # val_annotations.txt: val_k belongs to TINY_WNIDS[k % 3] = [n02124075, n01443537, n01629819][k % 3]
    assert files.test["test"].clean_labels.tolist() == [2, 0, 1, 2, 0, 1]
    assert files.family == "fine_grained"


def test_stanford_cars_class_folders(tmp_path):
    files = read_stanford_cars(make_stanford_cars(tmp_path, per_class=3, test_per_class=2))
    assert files.class_names == sorted(CARS_CLASSES)
    assert len(files.train) == 9 and len(files.test["test"]) == 6
    assert files.train.clean_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(Path(p).is_file() for p in files.train.paths)


def test_cub200_one_based_labels_and_split(tmp_path):
    files = read_cub200(make_cub200(tmp_path, per_class=3))
    assert files.class_names == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]
    assert files.train.clean_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert files.test["test"].clean_labels.tolist() == [0, 1, 2]
    assert files.train.sample_ids[0].startswith("images/001.Black_footed_Albatross/")


# ----- real-noise datasets ------------------------------------------------------------------------


def test_clothing1m_lists(tmp_path):
    root = make_clothing1m(tmp_path, train_per_class=4, test_per_class=1, val_per_class=1)
    files = read_clothing1m(root, subset_size=None, with_val=True)
    assert files.class_names == CLOTHING1M_NAMES and files.family == "clothing1m"
    assert len(files.train) == 56 and list(files.test) == ["test", "val"]
    assert files.train.clean_labels is None  # only some training images have clean labels
    assert files.train.noisy_labels.tolist() == [c for c in range(14) for _ in range(4)]
    assert files.test["test"].clean_labels.tolist() == list(range(14))
    assert files.train.sample_ids[0].startswith("images/") and Path(files.train.paths[0]).is_file()


def test_clothing1m_balanced_subset_is_seeded(tmp_path):
    root = make_clothing1m(tmp_path, train_per_class=4)
    a = read_clothing1m(root, subset_size=28, subset_seed=3)
    b = read_clothing1m(root, subset_size=28, subset_seed=3)
    c = read_clothing1m(root, subset_size=28, subset_seed=4)
    assert len(a.train) == 28 and np.bincount(a.train.noisy_labels).tolist() == [2] * 14
    assert a.train.sample_ids == b.train.sample_ids != c.train.sample_ids


def test_balanced_subset_quota():
    labels = np.repeat(np.arange(14), 3000)
    picked = balanced_subset(labels, 32000, 14, seed=0)
    assert len(picked) == 32000 and np.all(np.diff(picked) > 0)
    counts = np.bincount(labels[picked])
    assert counts.max() - counts.min() == 1


def test_webvision_mini_filters_to_50_classes(tmp_path):
    root = make_webvision(tmp_path / "wv", train_per_class=2, classes=(0, 1, 2, 49, 50, 51))
    imagenet = make_imagenet_val(tmp_path / "imagenet", classes=(0, 1, 49, 50, 700), layout="flat")
    files = read_webvision(root, imagenet_root=imagenet)
    assert files.num_classes == 50 and files.class_names[:2] == ["name0", "name1"]
    assert files.train.clean_labels is None and files.train.noisy_labels.tolist() == [0, 0, 1, 1, 2, 2, 49, 49]
    assert list(files.test) == ["webvision_val", "imagenet_val"]
    assert files.test["webvision_val"].clean_labels.tolist() == [0, 1, 2, 49]
    assert files.test["webvision_val"].sample_ids[0].startswith("val_images_256/")
    inval = files.test["imagenet_val"]
    assert inval.clean_labels.tolist() == [0, 1, 49]
    assert inval.sample_ids == [f"val/ILSVRC2012_val_{k:08d}.JPEG" for k in (1, 2, 3)]


def test_webvision_imagenet_val_in_wnid_folders(tmp_path):
    root = make_webvision(tmp_path / "wv")
    imagenet = make_imagenet_val(tmp_path / "imagenet", classes=(0, 1, 49, 50), layout="folders")
    assert read_webvision(root, imagenet_root=imagenet).test["imagenet_val"].clean_labels.tolist() == [0, 1, 49]


def test_webvision_without_imagenet_has_one_test_set(tmp_path):
    assert list(read_webvision(make_webvision(tmp_path)).test) == ["webvision_val"]


# ----- users' own data ----------------------------------------------------------------------------


def test_imagefolder_with_test_folder(tmp_path):
    files = read_imagefolder(make_imagefolder(tmp_path, per_class=4, test_per_class=2))
    assert files.class_names == ["cat", "dog", "fox"] and files.family == "generic"
    assert len(files.train) == 12 and len(files.test["test"]) == 6  # notes.txt ignored, .PNG/.JPEG accepted
    assert files.train.sample_ids[:4] == [
        "train/cat/cat_0.jpg",
        "train/cat/cat_1.PNG",
        "train/cat/cat_2.JPEG",
        "train/cat/cat_3.jpg",
    ]


def test_imagefolder_seeded_stratified_holdout(tmp_path):
    root = make_imagefolder(tmp_path, per_class=5, test_per_class=None)
    a = read_imagefolder(root, split_fraction=0.4, split_seed=1)
    b = read_imagefolder(root, split_fraction=0.4, split_seed=1)
    assert len(a.train) == 9 and np.bincount(a.test["test"].clean_labels).tolist() == [2, 2, 2]
    assert a.test["test"].sample_ids == b.test["test"].sample_ids
    assert not set(a.train.sample_ids) & set(a.test["test"].sample_ids)
    assert read_imagefolder(root).test == {}


@pytest.mark.parametrize("labels_as", ["name", "index"])
def test_csv_labels_as_names_or_indices(tmp_path, labels_as):
    files = read_csv(make_csv(tmp_path, labels_as=labels_as))
    expected = ["apple", "banana", "cherry"] if labels_as == "name" else ["0", "1", "2"]
    assert files.class_names == expected
    assert len(files.train) == 9 and len(files.test["test"]) == 3
    assert files.train.clean_labels.tolist() == [0, 1, 2] * 3
    assert files.train.sample_ids[0] == "images/apple/000.png"


def test_csv_path_may_be_the_file_and_class_names_given(tmp_path):
    make_csv(tmp_path, labels_as="index")
    files = read_csv(tmp_path / "labels.csv", class_names=["a", "b", "c", "d"])
    assert files.num_classes == 4 and files.class_names[0] == "a"


# ----- image decoding -----------------------------------------------------------------------------


def test_load_rgb_reduced_size_jpeg(tmp_path):
    path = write_image(tmp_path / "big.jpg", 0, size=(400, 300))
    full = load_rgb(str(path))
    small = load_rgb(str(path), decode_size=64)
    assert full.size == (400, 300) and full.mode == "RGB"
    assert small.size == (100, 75)  # 1/4 scale keeps the shorter side >= 64
    gray = tmp_path / "gray.png"
    Image.new("L", (5, 5)).save(gray)
    assert load_rgb(str(gray), decode_size=64).mode == "RGB"


# ----- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_missing_root_names_the_path(tmp_path, name):
    missing = tmp_path / "does_not_exist"
    with pytest.raises(DatasetError, match="does_not_exist"):
        READERS[name](missing)


@pytest.mark.parametrize(
    ("builder", "reader", "removed"),
    [
        (make_clothing1m, read_clothing1m, "noisy_train_key_list.txt"),
        (make_clothing1m, read_clothing1m, "clean_test_key_list.txt"),
        (make_webvision, read_webvision, "info/train_filelist_google.txt"),
        (make_tiny_imagenet, read_tiny_imagenet, "tiny-imagenet-200/val/val_annotations.txt"),
        (make_cub200, read_cub200, "CUB_200_2011/train_test_split.txt"),
        (make_csv, read_csv, "labels.csv"),
    ],
)
def test_missing_list_file_names_it(tmp_path, builder, reader, removed):
    root = builder(tmp_path)
    (root / removed).unlink()
    with pytest.raises(DatasetError, match=Path(removed).name.replace(".", r"\.")):
        reader(root)


def test_label_outside_range_names_file_and_value(tmp_path):
    root = make_cub200(tmp_path / "cub")
    labels = root / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text("1 4\n" + labels.read_text().split("\n", 1)[1])  # image 1: class 4 of 3
    with pytest.raises(DatasetError, match=r"image_class_labels\.txt.*label 4"):
        read_cub200(root)

    root = make_clothing1m(tmp_path / "c1m")
    kv = root / "noisy_label_kv.txt"
    kv.write_text(kv.read_text().replace(" 13\n", " 14\n", 1))
    with pytest.raises(DatasetError, match=r"noisy_label_kv\.txt.*label 14"):
        read_clothing1m(root)

    root = make_csv(tmp_path / "csv", labels_as="index")
    with pytest.raises(DatasetError, match=r"labels\.csv, line 4: label 2 is outside \[0, 1\]"):
        read_csv(root, class_names=["a", "b"])


def test_class_folder_without_images(tmp_path):
    root = make_stanford_cars(tmp_path)
    empty = root / "train" / "Zz Empty Class 2020"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="Zz Empty Class 2020.*contains no images"):
        read_stanford_cars(root)


def test_test_class_unknown_to_train(tmp_path):
    root = make_imagefolder(tmp_path)
    shutil.copytree(root / "test" / "cat", root / "test" / "wolf")
    with pytest.raises(DatasetError, match="wolf"):
        read_imagefolder(root)


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg"):
        load_rgb(str(bad), decode_size=32)
    truncated = write_image(tmp_path / "cut.jpg", 0, size=(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DatasetError, match="cut.jpg"):
        load_rgb(str(truncated))
