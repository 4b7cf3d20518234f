"""The command line as a user meets it: installed package, readable errors, no traceback walls."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT


def run_module(args: list[str], cwd: Path, extra_env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "LOCAL_RANK", "WORLD_SIZE"))}
    env.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", **(extra_env or {})})
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed_copy(tmp_path_factory) -> Path:
    """The package installed NON-editable into a fresh target directory (configs must come along)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(REPO_ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return target


def test_non_editable_install_finds_configs_from_any_directory(installed_copy, tmp_path):
    result = run_module(
        ["deft_lightning.train", "--cfg", "job", "dataset=cifar100", "backbone=convnext_t"],
        cwd=tmp_path, extra_env={"PYTHONPATH": str(installed_copy)},
    )
    assert result.returncode == 0, result.stderr
    assert "name: cifar100" in result.stdout
    assert "convnext_tiny.fb_in1k" in result.stdout
    where = run_module(["deft_lightning.train", "--info", "searchpath"], cwd=tmp_path,
                       extra_env={"PYTHONPATH": str(installed_copy)})
    assert "deft_lightning" in where.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import deft_lightning; print(deft_lightning.__file__)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed_copy)}, capture_output=True, text=True,
    )
    assert imported.stdout.strip().startswith(str(installed_copy))


def test_missing_dataset_root_is_one_clear_paragraph(tmp_path):
    result = run_module(
        ["deft_lightning.train", "dataset=cifar100", "dataset.root=/nonexistent", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "/nonexistent" in result.stderr
    assert "layout" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_offline_clip_without_local_file_says_how_to_pass_one(tmp_path):
    result = run_module(
        ["deft_lightning.train", "dataset=synthetic", "phases=[detect]", f"hydra.run.dir={tmp_path / 'run'}",
         f"paths.cache_dir={tmp_path / 'cache'}"],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "detector.clip.weights=" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_weights_file_is_named(tmp_path):
    result = run_module(
        ["deft_lightning.train", "dataset=synthetic", "phases=[detect]", "detector.clip.weights=/no/such/file.bin",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "/no/such/file.bin" in result.stderr


def test_hydra_config_errors_are_user_errors_without_a_traceback(tmp_path):
    result = run_module(["deft_lightning.train", "noise=bogus", "--cfg", "job"], cwd=tmp_path)
    assert result.returncode == 2
    assert "noise/bogus" in result.stderr and "Traceback" not in result.stderr


def test_an_internal_value_error_is_not_passed_off_as_a_user_error(tmp_path, monkeypatch):
    """The old catch-all turned every ValueError (bugs included) into a one-line 'error:' with exit 2."""
    from deft_lightning import cli

    def buggy(cfg):
        raise ValueError("an internal bug")

    monkeypatch.setattr(cli, "in_multirun", lambda: False)
    with pytest.raises(SystemExit) as caught:
        cli.run_entry(buggy, None)
    assert caught.value.code == 1

    def user_mistake(cfg):
        from deft_lightning.errors import ConfigError

        raise ConfigError("adapter.mask_mode must be one of ('subset', 'loss_mask'), got 'x'")

    with pytest.raises(SystemExit) as caught:
        cli.run_entry(user_mistake, None)
    assert caught.value.code == 2


def raise_config_error(**kwargs):
    from deft_lightning.errors import ConfigError

    raise ConfigError("dataset.reader.num_classes must be positive, got -1")


def test_a_user_error_raised_inside_instantiate_is_still_a_user_error():
    from hydra.utils import instantiate

    from deft_lightning import cli
    from deft_lightning.errors import ConfigError

    with pytest.raises(Exception) as caught:
        instantiate({"_target_": "test_cli.raise_config_error"})
    assert not isinstance(caught.value, ConfigError)  # Hydra wraps it ...
    assert isinstance(cli.as_user_error(caught.value), ConfigError)  # ... and the CLI unwraps it
    with pytest.raises(Exception) as caught:
        instantiate({"_target_": "builtins.int", "_args_": ["not a number"]})
    assert cli.as_user_error(caught.value) is None  # an internal failure stays internal
