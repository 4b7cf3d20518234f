"""``python -m deft_lightning.inspect_data`` on every dataset's fixture tree: JSON facts and clear failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.datasets import BUILDERS, make_cifar100, make_imagenet_val

from deft_lightning.inspect_data import compose_config, inspect, main

REPO_SRC = Path(__file__).resolve().parents[1] / "src"

# name -> (noise overrides, num_classes, num_train, num_test, first sample id, realised noise rate).
# noise=none claims no true labels (issue 14: the given labels are what is examined), so its rate is unknown.
EXPECTED = {
    "cifar10": ([], 10, 30, {"test": 10}, "0", None),
    "cifar100": ([], 100, 40, {"test": 20}, "0", None),
    "cifar100n": (["noise=real"], 100, 40, {"test": 20}, "0", 0.25),
    "tiny_imagenet": ([], 3, 9, {"test": 6}, "train/n01443537/images/n01443537_0.JPEG", None),
    "stanford_cars": ([], 3, 9, {"test": 6}, "train/AM General Hummer SUV 2000/00000.jpg", None),
    "cub200": ([], 3, 6, {"test": 3}, "images/001.Black_footed_Albatross/Black_footed_Albatross_0000_1.jpg", None),
    "clothing1m": (["noise=real"], 14, 56, {"test": 14}, "images/1/01/000001.jpg", None),
    "webvision": (["noise=real"], 50, 8, {"webvision_val": 4, "imagenet_val": 3}, "google/q0001/0000000.jpg", None),
    "imagefolder": ([], 3, 12, {"test": 6}, "train/cat/cat_0.jpg", None),
    "csv": ([], 3, 9, {"test": 3}, "images/apple/000.png", None),
}


def run_json(capsys, overrides: list[str]) -> dict:
    assert main([*overrides, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inspect_json_for_every_dataset(tmp_path, capsys, name):
    noise, num_classes, num_train, num_test, first_id, rate = EXPECTED[name]
    root = BUILDERS[name](tmp_path / name)
    overrides = [f"dataset={name}", f"dataset.root={root}", f"paths.cache_dir={tmp_path / 'cache'}", *noise]
    if name == "webvision":
        overrides.append(f"dataset.reader.imagenet_root={make_imagenet_val(tmp_path / 'imagenet')}")
    report = run_json(capsys, overrides)
    assert report["dataset"] == name
    assert report["num_classes"] == num_classes == len(report["class_names"])
    assert report["num_train"] == num_train and report["num_test"] == num_test
    assert sum(report["train_label_counts"]) == num_train and len(report["train_label_counts"]) == num_classes
    assert report["noise_mode"] == (noise[0].split("=")[1] if noise else "none")
    assert report["realised_noise_rate"] == rate
    items = report["first_train_items"]
    assert len(items) == 5 and items[0]["index"] == 0 and items[0]["sample_id"] == first_id
    assert all((it["true_label"] is None) == (rate is None) for it in items)


def test_inspect_reports_class_names_from_the_files(tmp_path, capsys):
    root = BUILDERS["cub200"](tmp_path)
    report = run_json(capsys, ["dataset=cub200", f"dataset.root={root}", f"paths.cache_dir={tmp_path / 'c'}"])
    assert report["class_names"] == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross"]
    assert report["warnings"] and "200" in report["warnings"][0]  # the config says 200, the fixture has 3


def test_inspect_with_sym_noise_and_output_file(tmp_path, capsys):
    root = make_cifar100(tmp_path / "data", n_train=400)
    out = tmp_path / "reports" / "cifar.json"
    overrides = [
        "dataset=cifar100",
        f"dataset.root={root}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "noise=sym",
        "noise.ratio=0.5",
        "noise.seed=3",
        f"inspect.out={out}",
    ]
    assert main(overrides) == 0
    stdout = capsys.readouterr().out
    assert "cifar100 (100 classes" in stdout and "sym ratio 0.5 seed 3" in stdout and str(out) in stdout
    report = json.loads(out.read_text())
    assert report["noise_ratio"] == 0.5 and 0.4 < report["realised_noise_rate"] < 0.6
    changed = [it for it in report["first_train_items"] if it["given_label"] != it["true_label"]]
    assert report["realised_noise_rate"] > 0 and isinstance(changed, list)
    assert len(list((tmp_path / "cache" / "noise").glob("cifar100-400__sym_r0.5_s3_*.npz"))) == 1
    # inspect(cfg) gives the same facts
    cfg = compose_config(overrides)
    assert inspect(cfg)["train_label_counts"] == report["train_label_counts"]


def test_missing_root_exits_2_with_one_message(tmp_path, capsys):
    code = main(["dataset=stanford_cars", f"dataset.root={tmp_path / 'nowhere'}", "--json"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "nowhere" in captured.err and "Traceback" not in captured.err


def test_bad_ratio_exits_2_and_writes_no_cache(tmp_path, capsys):
    root = make_cifar100(tmp_path / "data")
    cache = tmp_path / "cache"
    code = main(
        ["dataset=cifar100", f"dataset.root={root}", f"paths.cache_dir={cache}", "noise=sym", "noise.ratio=1.5"]
    )
    assert code == 2 and "noise.ratio=1.5" in capsys.readouterr().err
    assert not cache.exists()


def test_unknown_dataset_lists_the_choices(capsys):
    assert main(["dataset=imagenet21k"]) == 2
    err = capsys.readouterr().err
    assert "imagenet21k" in err and "cifar100" in err


def test_command_line_entry_point(tmp_path):
    """The real ``python -m`` entry: JSON on stdout, and exit status 2 with a one-paragraph error."""
    root = BUILDERS["imagefolder"](tmp_path / "data")
    env = {"PYTHONPATH": str(REPO_SRC), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "deft_lightning.inspect_data", "dataset=imagefolder", f"paths.cache_dir={tmp_path}"]
    ok = subprocess.run([*cmd, f"dataset.root={root}", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["num_train"] == 12
    bad = subprocess.run(
        [*cmd, f"dataset.root={tmp_path / 'missing'}"], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 2 and "missing" in bad.stderr and "Traceback" not in bad.stderr


def test_verify_images_lists_the_unreadable_ones_as_json(tmp_path, capsys):
    from fixtures.datasets import add_bad_images

    root = BUILDERS["imagefolder"](tmp_path / "data")
    bad = add_bad_images(root / "train" / "fox")
    out = tmp_path / "reports" / "bad.json"
    overrides = ["dataset=imagefolder", f"dataset.root={root}", f"paths.cache_dir={tmp_path / 'cache'}",
                 f"inspect.unreadable_out={out}", "--verify-images"]  # fmt: skip
    report = run_json(capsys, overrides)
    listed = json.loads(out.read_text())
    assert listed["dataset"] == "imagefolder" and listed["checked"] == 15 + 6  # 12 + 3 bad train, 6 test
    by_name = {Path(item["path"]).name: item for item in listed["unreadable"]}
    assert set(by_name) == {p.name for p in bad.values()}
    assert "truncated" in by_name["zz_truncated.jpg"]["reason"]
    assert "0 bytes" in by_name["zz_empty.png"]["reason"]
    assert "not an image" in by_name["zz_not_an_image.jpg"]["reason"]
    assert all(item["split"] == "train" and item["sample_id"].startswith("train/fox/") for item in listed["unreadable"])
    assert report["verify_images"]["unreadable"] == 3 and report["verify_images"]["file"] == str(out)
    # the summary names them too, and without the flag nothing is decoded or written
    out.unlink()
    assert main(overrides[:-1] + ["inspect.verify_images=true"]) == 0
    text = capsys.readouterr().out
    assert "21 decoded, 3 unreadable" in text and "zz_truncated.jpg" in text and out.is_file()
    out.unlink()
    assert "verify_images" not in run_json(capsys, overrides[:-1]) and not out.exists()


def test_verify_images_on_a_clean_tree_writes_an_empty_list(tmp_path, capsys):
    root = BUILDERS["csv"](tmp_path / "data")
    out = tmp_path / "bad.json"
    report = run_json(capsys, ["dataset=csv", f"dataset.root={root}", f"inspect.unreadable_out={out}",
                               f"paths.cache_dir={tmp_path / 'cache'}", "inspect.workers=1", "--verify-images"])  # fmt: skip
    assert report["verify_images"]["checked"] == 12 and report["verify_images"]["unreadable"] == 0
    assert json.loads(out.read_text())["unreadable"] == []
