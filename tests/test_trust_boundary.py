"""Issue 14, item 2: a detector artefact is data, never code.

A shared ``detector_weights.pt`` is loaded with ``torch.load(weights_only=True)`` and then checked
before anything is built: a ``_target_`` (or any ``_``-key), an interpolation, an unknown key or a
PEFT name that is not the project's own is refused with an ArtifactError naming the file and the key.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose
from deft_lightning.detect import detect
from deft_lightning.errors import ArtifactError, UserError
from deft_lightning.pipeline.artefact import FORMAT, FORMAT_VERSION, check_class_names, read_artefact
from deft_lightning.selection.clean_selection import CleanSelection

CLASS_NAMES = ["red", "green", "blue", "yellow", "purple"]  # dataset=synthetic


def write_marker(path: str, *args, **kwargs):
    """What a crafted artefact asks Hydra to call: leaves a file behind if it is ever called."""
    Path(path).write_text("called")
    return lambda *a, **k: None


def overrides(root: Path, name: str, *extra: str) -> list[str]:
    return ["experiment=demo", f"paths.output_dir={root / name}", f"paths.cache_dir={root / 'cache'}",
            "callbacks.progress_bar=false", "logger=none", "detector.epochs=1", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One DEFT phase 1 on the demo (1 epoch), whose artefact the tests reload or tamper with."""
    root = tmp_path_factory.mktemp("trust")
    detect(compose(overrides(root, "run"), config_name="detect"))
    return root, root / "run" / "detection" / "detector_weights.pt"


def save(payload: dict, path: Path) -> Path:
    torch.save(payload, path)
    return path


def reload(root: Path, name: str, weights: Path):
    return detect(compose(overrides(root, name, f"detector.weights={weights}"), config_name="detect"))


def test_the_artefact_holds_plain_values_only(trained):
    _, weights = trained
    payload = torch.load(weights, weights_only=True)
    assert payload["format"] == FORMAT and payload["format_version"] == FORMAT_VERSION
    assert payload["kind"] == "deft" and payload["class_names"] == CLASS_NAMES
    assert payload["peft"]["name"] == "vpt_deep" and payload["peft"]["options"]["num_tokens"] == 4
    # a random-weight CLIP records the seed it was drawn with (issue 15: load_detector rebuilds it anywhere)
    assert payload["clip"] == {"model_name": "deft-tiny-clip", "pretrained": None, "weights": None, "init_seed": 0}
    assert payload["inputs"] == {"family": "cifar", "native_size": 32}  # the inference pass's test transform
    assert payload["detector"]["prompt"]["n_ctx"] == 4 and payload["optimizer"]["name"] == "SGD"

    def keys(value, where=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield f"{where}.{k}"
                if k != "state_dict":
                    yield from keys(v, f"{where}.{k}")

    assert not [k for k in keys(payload) if k.rsplit(".", 1)[-1].startswith("_")]


def crafted_old_style(weights: Path, marker: Path) -> dict:
    """The pre-fix format (Hydra config inside), armed: building it would call write_marker."""
    good = torch.load(weights, weights_only=True)
    call = {"_target_": f"{__name__}.write_marker", "_partial_": True, "path": str(marker)}
    return {"kind": "deft", "state_dict": good["state_dict"], "class_names": CLASS_NAMES,
            "detector": {"name": "deft", "kind": "deft", "optimizer": call,
                         "clip": {"model_name": "deft-tiny-clip", "pretrained": None, "weights": None},
                         "prompt": {"n_ctx": 4, "class_specific": False, "class_position": "end", "init_words": None}},
            "peft": {"name": "vpt_deep", "module": call}, "extra": {}}


def test_an_artefact_naming_a_callable_is_refused_and_nothing_is_called(trained, tmp_path):
    root, weights = trained
    marker = tmp_path / "marker.txt"
    crafted = crafted_old_style(weights, marker)
    # the payload is live: Hydra would call the function (checked on a copy, with another marker)
    from hydra.utils import instantiate

    armed = tmp_path / "armed.txt"
    instantiate(dict(crafted["peft"]["module"], path=str(armed)))(visual=None)  # as the old build_deft_detector did
    assert armed.read_text() == "called"

    path = save(crafted, tmp_path / "crafted.pt")
    with pytest.raises(UserError) as refused:
        reload(root, "crafted", path)
    assert isinstance(refused.value, ArtifactError)
    message = str(refused.value)
    assert str(path) in message and "_target_" in message
    assert "detector.optimizer._target_" in message or "peft.module._target_" in message
    assert not marker.exists()
    assert not (root / "crafted" / "detection" / "selection.csv").exists()


@pytest.mark.parametrize(
    "tamper, key",
    [
        (lambda p, m: p["peft"]["options"].update(_target_=f"{__name__}.write_marker", path=str(m)), "peft.options._target_"),
        (lambda p, m: p["detector"].update(optimizer={"_target_": f"{__name__}.write_marker", "path": str(m)}),
         "detector.optimizer._target_"),
        (lambda p, m: p["extra"].update(_args_=[str(m)]), "extra._args_"),
        (lambda p, m: p["detector"].update(surprise=1), "detector.surprise"),
        (lambda p, m: p.update(config={"anything": 1}), "config"),
        (lambda p, m: p["peft"]["options"].update(bottleneck=8), "peft.options.bottleneck"),
        (lambda p, m: p["peft"].update(name="../../../tmp/evil"), "peft.name"),
        (lambda p, m: p["clip"].update(model_name="${oc.env:HOME}"), "clip.model_name"),
        (lambda p, m: p["detector"]["prompt"].update(n_ctx="4"), "detector.prompt.n_ctx"),
        (lambda p, m: p.update(kind="label_match"), "kind"),
    ],
    ids=["target-in-peft", "target-in-detector", "args-in-extra", "unknown-detector-key", "unknown-top-key",
         "option-of-another-peft", "peft-path", "interpolation", "wrong-type", "untrained-kind"],
)
def test_tampered_artefacts_are_refused_naming_file_and_key(trained, tmp_path, tamper, key):
    _, weights = trained
    payload = copy.deepcopy(torch.load(weights, weights_only=True))
    marker = tmp_path / "marker.txt"
    tamper(payload, marker)
    path = save(payload, tmp_path / "tampered.pt")
    with pytest.raises(ArtifactError) as refused:
        read_artefact(path)
    assert str(path) in str(refused.value) and repr(key) in str(refused.value)
    assert not marker.exists()


def test_damaged_or_foreign_files_are_refused_naming_the_file(trained, tmp_path):
    _, weights = trained
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    foreign = save({"some": torch.zeros(2)}, tmp_path / "foreign.pt")
    for path in (truncated, garbage, foreign, tmp_path / "missing.pt"):
        with pytest.raises(ArtifactError, match=str(path)):
            read_artefact(path)


def test_a_clean_artefact_still_reloads_with_identical_p_clean(trained):
    root, weights = trained
    reload(root, "again", weights)
    first = CleanSelection.read_csv(root / "run" / "detection" / "selection.csv")
    again = CleanSelection.read_csv(root / "again" / "detection" / "selection.csv")
    assert np.abs(first.p_clean - again.p_clean).max() <= 1e-6


def test_shared_contexts_apply_to_other_class_names_but_class_specific_ones_do_not(trained, tmp_path):
    root, weights = trained
    payload = torch.load(weights, weights_only=True)
    renamed = save(dict(payload, class_names=list(reversed(CLASS_NAMES))), tmp_path / "renamed.pt")
    reload(root, "renamed", renamed)  # one shared context: the class names are not part of it

    detect(compose(overrides(root, "specific", "detector.prompt.class_specific=true"), config_name="detect"))
    specific = torch.load(root / "specific" / "detection" / "detector_weights.pt", weights_only=True)
    assert specific["detector"]["prompt"]["class_specific"] is True
    other = save(dict(specific, class_names=["cat", "dog", "fox", "owl", "bee"]), tmp_path / "specific_other.pt")
    with pytest.raises(ArtifactError) as refused:
        reload(root, "specific_other", other)
    message = str(refused.value)
    assert str(other) in message and "'cat'" in message and "'red'" in message and "class-specific" in message
    assert not (root / "specific_other" / "detection" / "selection.csv").exists()


def test_the_small_loss_head_needs_the_same_classes():
    artefact = {"kind": "small_loss", "class_names": ["a", "b"], "detector": {}}
    check_class_names(artefact, ["a", "b"], "w.pt")
    with pytest.raises(ArtifactError, match="small-loss head"):
        check_class_names(artefact, ["b", "a"], "w.pt")
    with pytest.raises(ArtifactError, match="small-loss head"):
        check_class_names(artefact, ["a", "b", "c"], "w.pt")


def test_label_files_load_as_data_only_and_name_the_file(tmp_path):
    """noise.label_file: a pickled .npy is refused (never unpickled), a non-UTF-8 text file is named."""
    from deft_lightning.data.base import DatasetError
    from deft_lightning.data.noise import read_label_file

    class Armed:
        def __reduce__(self):
            return (Path(tmp_path / "marker.txt").write_text, ("called",))

    pickled = tmp_path / "labels.npy"
    np.save(pickled, np.array([Armed(), 1], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=str(pickled)):
        read_label_file(pickled, 2, 3)
    assert not (tmp_path / "marker.txt").exists()
    np.load(pickled, allow_pickle=True)  # the file is armed: unpickling it would have run the call
    assert (tmp_path / "marker.txt").read_text() == "called"
    latin1 = tmp_path / "labels.csv"
    latin1.write_bytes("label\n1\n2 é\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=f"{latin1}.*noise.label_file"):
        read_label_file(latin1, 2, 3)
