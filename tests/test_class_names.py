"""Curated class names (``dataset.class_names=curated``): the shipped lists, and how a list is applied."""

from __future__ import annotations

import pytest
from fixtures.datasets import CLOTHING1M_NAMES, make_cifar100, make_clothing1m, make_cub200, make_webvision
from hydra.utils import instantiate

from deft_lightning.data.base import DatasetError
from deft_lightning.data.class_names import CURATED, curated_file, read_class_names_file
from deft_lightning.data.readers.cifar import read_cifar100
from deft_lightning.data.readers.clothing1m import read_clothing1m
from deft_lightning.data.readers.fine_grained import read_cub200
from deft_lightning.data.readers.webvision import read_webvision
from deft_lightning.inspect_data import compose_config

# one entry per shipped list where it differs from the dataset's own files (index: curated, files' name)
KNOWN = {
    "webvision": (50, 4, "hammerhead shark"),  # synsets.txt first synonym: "hammerhead"
    "clothing1m": (14, 8, "Downcoat"),  # category_names_eng.txt: "Down Coat"
    "cifar100": (100, 39, "computer_keyboard"),  # CIFAR-100 meta: "keyboard"
    "cifar100n": (100, 39, "computer_keyboard"),
    "tiny_imagenet": (200, 58, "lesser panda"),
}


@pytest.mark.parametrize("dataset", sorted(CURATED))
def test_each_shipped_list_has_its_known_entry(dataset):
    count, index, name = KNOWN[dataset]
    names = read_class_names_file(curated_file(dataset))
    assert len(names) == count and names[index] == name
    assert len(set(names)) == count


def test_more_known_entries():
    webvision = read_class_names_file(curated_file("webvision"))
    assert webvision[0] == "tench" and webvision[7] == "rooster" and webvision[49] == "Nile crocodile"
    assert read_class_names_file(curated_file("tiny_imagenet"))[0] == "goldfish"


def test_curated_replaces_the_file_names_in_index_order(tmp_path):
    root = make_webvision(tmp_path)
    plain = read_webvision(root)
    curated = read_webvision(root, class_names="curated")
    assert plain.class_names[4] == "name4" and curated.class_names[4] == "hammerhead shark"
    assert curated.train.noisy_labels.tolist() == plain.train.noisy_labels.tolist()  # labels untouched

    c1m = make_clothing1m(tmp_path / "c1m")
    assert read_clothing1m(c1m).class_names == CLOTHING1M_NAMES
    assert read_clothing1m(c1m, class_names="curated").class_names[8] == "Downcoat"


def test_a_wrong_length_list_is_refused_naming_the_file(tmp_path):
    root = make_clothing1m(tmp_path / "c1m")
    short = tmp_path / "my_names.txt"
    short.write_text("\n".join(CLOTHING1M_NAMES[:13]) + "\n")
    with pytest.raises(DatasetError, match=r"my_names\.txt lists 13 class names, but clothing1m has 14 classes"):
        read_clothing1m(root, class_names=str(short))
    # a curated list against files with another class count (a 10-class CIFAR-100-style tree)
    cifar = make_cifar100(tmp_path / "cifar", num_classes=10)
    with pytest.raises(DatasetError, match=r"cifar100\.txt lists 100 class names, but cifar100 has 10 classes"):
        read_cifar100(cifar, class_names="curated")


def test_curated_list_length_is_checked(tmp_path, monkeypatch):
    """The shipped file itself is checked: a damaged copy of it is refused by name."""
    import deft_lightning.data.class_names as cn

    broken = tmp_path / "clothing1m.txt"
    broken.write_text("T-Shirt\nShirt\n")
    monkeypatch.setattr(cn, "curated_file", lambda dataset: broken)
    with pytest.raises(DatasetError, match=rf"{broken} lists 2 class names, but clothing1m has 14"):
        read_clothing1m(make_clothing1m(tmp_path / "c1m"), class_names="curated")


def test_no_curated_list_for_a_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=r"no curated class-name list ships for 'cub200'.*webvision"):
        read_cub200(make_cub200(tmp_path), class_names="curated")


def test_a_list_file_with_duplicates_or_missing_is_refused(tmp_path):
    dup = tmp_path / "dup.txt"
    dup.write_text("a\nb\na\n")
    with pytest.raises(DatasetError, match=r"dup\.txt names a class twice: \['a'\]"):
        read_class_names_file(dup)
    with pytest.raises(DatasetError, match=r"nowhere\.txt not found"):
        read_cub200(make_cub200(tmp_path / "cub"), class_names=str(tmp_path / "nowhere.txt"))


def test_config_option_reaches_the_reader(tmp_path):
    root = make_webvision(tmp_path)
    cfg = compose_config(["dataset=webvision", f"dataset.root={root}", "dataset.class_names=curated"])
    assert cfg.dataset.reader.class_names == "curated"
    files = instantiate(cfg.dataset.reader)(root=str(root))
    assert files.class_names[7] == "rooster"
    cfg = compose_config(["dataset=webvision", f"dataset.root={root}"])
    assert instantiate(cfg.dataset.reader)(root=str(root)).class_names[7] == "name7"
    names = tmp_path / "names.txt"
    names.write_text("".join(f"class {i}\n" for i in range(50)))
    cfg = compose_config(["dataset=webvision", f"dataset.class_names={names}"])
    assert instantiate(cfg.dataset.reader)(root=str(root)).class_names[49] == "class 49"
