"""Issue 14, item 5: a selection says what it was made from, and is refused on other data.

``selection.csv`` carries a constant ``fingerprint`` column and ``summary.json`` a ``fingerprint``
dict: dataset, N, a hash of the sample ids and given labels, and the noise settings. Phase 2
(``adapter.selection=``) and ``resume`` refuse a selection whose fingerprint differs, naming both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import compose
from deft_lightning.detect import detect
from deft_lightning.errors import SelectionError, UserError
from deft_lightning.pipeline.data import build_datamodule
from deft_lightning.pipeline.detection import load_selection, run_detection
from deft_lightning.selection.clean_selection import CleanSelection
from deft_lightning.selection.fingerprint import Fingerprint, fingerprint_of, make_fingerprint
from deft_lightning.train import train


def overrides(root: Path, name: str, *extra: str) -> list[str]:
    return ["experiment=demo", "detector=label_match", "detector.clip.model_name=deft-tiny-clip",
            "detector.clip.pretrained=null", f"paths.output_dir={root / name}", f"paths.cache_dir={root / 'cache'}",
            "callbacks.progress_bar=false", "logger=none", *extra]


@pytest.fixture(scope="module")
def seed2_run(tmp_path_factory):
    """A finished phase 1 (zero-shot, no training) on the demo data under noise.seed=2."""
    root = tmp_path_factory.mktemp("identity")
    detect(compose(overrides(root, "seed2", "noise.seed=2"), config_name="detect"))
    return root, root / "seed2" / "detection"


def datamodule(root: Path, *extra: str):
    dm = build_datamodule(compose(overrides(root, "dm", *extra)))
    return dm.load()


def test_the_fingerprint_travels_with_the_csv_and_the_summary(seed2_run):
    root, out = seed2_run
    table = pd.read_csv(out / "selection.csv")  # still an ordinary table for users
    assert len(table) == 200 and table["fingerprint"].nunique() == 1
    token = table["fingerprint"].iloc[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fingerprint"]["token"] == token
    expected = fingerprint_of(datamodule(root, "noise.seed=2"))
    assert token == expected.token()
    assert summary["fingerprint"] == expected.to_dict()
    assert (summary["fingerprint"]["dataset"], summary["fingerprint"]["num_samples"]) == ("synthetic", 200)
    assert (summary["fingerprint"]["noise_mode"], summary["fingerprint"]["noise_ratio"],
            summary["fingerprint"]["noise_seed"]) == ("sym", "0.4", "2")
    assert CleanSelection.read_csv(out / "selection.csv").fingerprint == expected
    load_selection(out / "selection.csv", datamodule(root, "noise.seed=2"))  # the same data: accepted


def test_phase2_refuses_a_selection_of_the_right_length_from_another_noise_seed(seed2_run):
    root, out = seed2_run
    path = out / "selection.csv"
    cfg = compose(overrides(root, "adapt", "phases=[adapt]", f"adapter.selection={path}", "debug=fast"))
    assert cfg.noise.seed == 1
    with pytest.raises(UserError) as refused:
        train(cfg)
    assert isinstance(refused.value, SelectionError)
    message = str(refused.value)
    file_token = pd.read_csv(path)["fingerprint"].iloc[0]
    run_token = fingerprint_of(datamodule(root)).token()
    assert file_token != run_token and file_token in message and run_token in message and str(path) in message
    assert "noise_seed" in message and "data_hash" in message
    assert not (root / "adapt" / "adaptation").exists() and not list((root / "adapt").rglob("*.ckpt"))


def test_resume_refuses_a_finished_phase1_under_a_changed_noise_ratio(seed2_run):
    root, out = seed2_run
    cfg = compose(overrides(root, "seed2", "noise.seed=2", "noise.ratio=0.3", "resume=true"), config_name="detect")
    dm = build_datamodule(cfg).load()
    with pytest.raises(SelectionError) as refused:
        run_detection(cfg, dm, root / "seed2")
    message = str(refused.value)
    assert "noise_ratio" in message and ":0.4:" in message and ":0.3:" in message
    # the unchanged config reuses it
    same = compose(overrides(root, "seed2", "noise.seed=2", "resume=true"), config_name="detect")
    selection, summary = run_detection(same, build_datamodule(same).load(), root / "seed2")
    assert len(selection) == 200 and summary["fingerprint"]["noise_seed"] == "2"


def test_a_selection_without_fingerprint_is_checked_by_its_given_labels(seed2_run, tmp_path):
    root, out = seed2_run
    table = pd.read_csv(out / "selection.csv").drop(columns=["fingerprint"])
    old = tmp_path / "old.csv"
    table.to_csv(old, index=False)
    load_selection(old, datamodule(root, "noise.seed=2"))  # same labels: accepted (older files have no fingerprint)
    with pytest.raises(SelectionError, match="given labels differ"):
        load_selection(old, datamodule(root))  # noise.seed=1: other given labels


DAMAGED = {
    "empty": "",
    "header_only": "index,given_label,predicted_label,p_clean,is_clean\n",
    "ragged": "index,given_label,predicted_label,p_clean,is_clean\n0,1,1,0.9,1\n1,0,0.2,0\n",
    "not_a_selection": "path,label\na.jpg,cat\n",
    "bad_value": "index,given_label,predicted_label,p_clean,is_clean\n0,1,1,0.9,1\n1,0,0,high,0\n",
    "duplicate_index": "index,given_label,predicted_label,p_clean,is_clean\n0,1,1,0.9,1\n0,0,0,0.2,0\n",
    "mixed_fingerprints": "index,given_label,predicted_label,p_clean,is_clean,fingerprint\n"
                          "0,1,1,0.9,1,v1:a:2:none:-:-:-:00\n1,0,0,0.2,0,v1:b:2:none:-:-:-:00\n",
    "bad_fingerprint": "index,given_label,predicted_label,p_clean,is_clean,fingerprint\n0,1,1,0.9,1,hello\n",
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_selection_files_are_refused_naming_the_file(tmp_path, name):
    path = tmp_path / f"{name}.csv"
    path.write_text(DAMAGED[name])
    with pytest.raises(SelectionError, match=str(path)):
        CleanSelection.read_csv(path).mask(2)


def test_a_truncated_selection_is_refused_naming_the_file(seed2_run, tmp_path):
    root, out = seed2_run
    text = (out / "selection.csv").read_text()
    dm = datamodule(root, "noise.seed=2")
    for cut, name in ((len(text) // 2, "mid_line"), (text.rfind("\n", 0, len(text) // 2) + 1, "at_line_end")):
        path = tmp_path / f"{name}.csv"
        path.write_text(text[:cut])
        with pytest.raises(SelectionError, match=str(path)):
            load_selection(path, dm)
    with pytest.raises(SelectionError, match="no clean selection"):
        load_selection(tmp_path / "missing.csv", dm)


def test_fingerprints_keep_only_what_the_noise_mode_uses():
    ids, labels = ["a", "b", "c"], np.array([0, 1, 1])
    none = make_fingerprint("imagefolder", ids, labels, "none", 0.4, 7)
    assert (none.noise_ratio, none.noise_seed, none.label_file) == ("-", "-", "-")
    assert none == make_fingerprint("imagefolder", ids, labels, "none", 0.0, 1)  # unused settings do not count
    real = make_fingerprint("csv", ids, labels, "real", 0.0, 1, label_file="/data/my labels.csv")
    assert real.label_file == "my_labels.csv" and real.noise_seed == "-"
    assert Fingerprint.from_token(real.token(), "x") == real
    assert make_fingerprint("csv", ["a", "c", "b"], labels, "real").data_hash != real.data_hash  # ids count
    assert make_fingerprint("csv", ids, np.array([0, 1, 0]), "real").data_hash != real.data_hash  # labels count
    sym = make_fingerprint("cifar100", ids, labels, "sym", 0.4, 1)
    assert sym.token().startswith("v1:cifar100:3:sym:0.4:1:-:") and sym.differences(
        make_fingerprint("cifar100", ids, labels, "sym", 0.4, 2)) == ["noise_seed"]
