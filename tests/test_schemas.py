"""Typed configs (issue 13): each group variant is a dataclass in Hydra's ConfigStore, so a misspelt key
or a wrong type fails at composition, naming the key, whether it comes from the command line or from a
YAML overlay; a user's own ``_target_`` keys stay possible with ``+``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import compose

UNUSED = "paths.output_dir=/tmp/unused"
CONF = Path(__file__).resolve().parents[1] / "src" / "deft_lightning" / "conf"


def composition_error(overrides: list[str], config_name: str = "train") -> str:
    with pytest.raises(ConfigCompositionException) as caught:
        compose(overrides + [UNUSED], config_name)
    error, text = caught.value, []
    while error is not None:  # Hydra's message, then the OmegaConf cause naming the full key
        text.append(str(error))
        error = error.__cause__
    return "\n".join(text)


@pytest.mark.parametrize("override,key", [
    ("detector.optimizer.lrr=0.1", "detector.optimizer.lrr"),
    ("noise.ration=0.2", "noise.ration"),
    ("detector.prompt.nctx=4", "detector.prompt.nctx"),
    ("backbone.model.pretrain=false", "backbone.model.pretrain"),
    ("trainer.acelerator=cpu", "trainer.acelerator"),
    ("data.num_worker=0", "data.num_worker"),
])
def test_a_misspelt_key_on_the_command_line_fails_naming_it(override, key):
    assert key in composition_error([override])


@pytest.mark.parametrize("override,key", [
    ("detector.epochs=ten", "detector.epochs"),
    ("noise.ratio=high", "noise.ratio"),
    ("peft.module.num_tokens=many", "peft.module.num_tokens"),
    ("callbacks.progress_bar=maybe", "callbacks.progress_bar"),
    ("seed=abc", "seed"),
])
def test_a_wrong_type_fails_naming_the_key(override, key):
    message = composition_error([override])
    assert f"full_key: {key}" in message


def _overlay(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\n" + text)
    return [f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"]


@pytest.mark.parametrize("text,key", [
    ("detector:\n  optimizer:\n    lrr: 0.1\n", "lrr"),
    ("noise:\n  ration: 0.2\n", "ration"),
    ("detectr:\n  epochs: 3\n", "detectr"),  # a misspelt group
    ("dataset:\n  reader:\n    num_trian: 10\n", "num_trian"),
])
def test_a_typo_in_a_yaml_experiment_overlay_fails_naming_the_key(tmp_path, text, key):
    message = composition_error(["dataset=synthetic", *_overlay(tmp_path, text)])
    assert key in message and "experiment/mine" in message


def test_a_wrong_type_in_a_yaml_overlay_fails(tmp_path):
    message = composition_error(_overlay(tmp_path, "detector:\n  epochs: ten\n"))
    assert "detector.epochs" in message


def test_values_are_converted_to_the_declared_type():
    cfg = compose(["detector.epochs=5", "noise.ratio=1e-1", "detector.logit_scale=50", UNUSED])
    assert cfg.detector.epochs == 5 and cfg.noise.ratio == 0.1
    assert isinstance(cfg.detector.logit_scale, float)  # declared float: an integer on the command line is converted


def test_a_users_own_target_and_its_extra_keys_are_still_possible():
    cfg = compose(["detector.optimizer._target_=torch.optim.RMSprop", "+detector.optimizer.alpha=0.9",
                   "+callbacks.extra.lr._target_=lightning.pytorch.callbacks.LearningRateMonitor",
                   "+trainer.max_time=00:01:00:00", UNUSED])
    assert cfg.detector.optimizer.alpha == 0.9 and cfg.trainer.max_time == "00:01:00:00"
    assert cfg.callbacks.extra.lr._target_.endswith("LearningRateMonitor")


def test_another_optimizer_node_may_replace_the_shipped_one():
    """A parent field holding a _target_ node is typed Any: the API and artefact reloads assign whole nodes."""
    from omegaconf import open_dict

    cfg = compose(["dataset=imagefolder", UNUSED])
    with open_dict(cfg):
        cfg.dataset.reader = {"_target_": "my.reader", "files": [1, 2]}
    assert cfg.dataset.reader.files == [1, 2]


def test_detector_kind_is_a_plain_string():
    from deft_lightning.config.schemas import DetectorConfig

    assert DetectorConfig.__dataclass_fields__["kind"].type in ("str", str)


def test_every_shipped_option_composes_into_its_schema():
    """Every YAML of the typed groups names a schema: its composed node is a structured config."""
    typed = {"detector", "peft", "backbone", "method", "noise", "trainer", "callbacks", "paths", "dataset"}
    for group in sorted(typed):
        for path in sorted((CONF / group).glob("*.yaml")):
            cfg = compose([f"{group}={path.stem}", UNUSED])
            assert OmegaConf.get_type(cfg[group]) is not dict, f"{group}={path.stem} has no schema"
