"""Packaging that fits users' environments: declared lowest versions instead of one torch release,
optional extras for W&B / SLURM / Parquet, console scripts for every entry point (Hydra's config
errors exit 2 through them too)."""

import importlib
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _requirement(name: str, requirements: list[str]) -> str:
    (found,) = [r for r in requirements if re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() == name.lower()]
    return found


def test_console_scripts_for_every_entry_point_call_functions_that_exist():
    scripts = PROJECT["scripts"]
    assert scripts["deft-train"] == "deft_lightning.train:cli_main"
    assert scripts["deft-detect"] == "deft_lightning.detect:cli_main"
    assert {"deft-inspect", "deft-aggregate"} <= set(scripts)
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_wandb_and_the_launcher_are_optional_extras():
    dependencies = PROJECT["dependencies"]
    extras = PROJECT["optional-dependencies"]
    assert not any(r.lower().startswith("wandb") for r in dependencies)
    assert _requirement("wandb", extras["wandb"])
    assert _requirement("hydra-submitit-launcher", extras["slurm"])
    assert _requirement("pyarrow", extras["parquet"])
    assert _requirement("cleanlab", extras["test"]) and _requirement("pytest", extras["test"])
    assert _requirement("pandas", dependencies)  # the Python API returns DataFrames


def _floor(requirement: str) -> tuple[int, ...]:
    (floor,) = re.findall(r">=\s*([0-9.]+)", requirement)
    return tuple(int(p) for p in floor.split("."))


def test_lowest_versions_are_declared_as_floors_with_a_matching_torch_pair():
    dependencies = PROJECT["dependencies"]
    torch, torchvision = _requirement("torch", dependencies), _requirement("torchvision", dependencies)
    # a released pair; the code needs torch.serialization.safe_globals (2.5), peft's transformers 5 needs torch 2.6
    assert _floor(torch) == (2, 6) and _floor(torchvision) == (0, 21)
    assert _floor(_requirement("lightning", dependencies)) >= (2, 6)  # Trainer.fit(weights_only=...)
    assert _floor(_requirement("peft", dependencies)) >= (0, 18)  # target_parameters; imports with transformers 5
    assert _floor(_requirement("timm", dependencies)) >= (1, 0, 21)  # hub weights with huggingface_hub >= 1.0
    for name in ("open_clip_torch", "timm", "peft", "hydra-core"):
        assert _floor(_requirement(name, dependencies)), name


def test_installed_versions_meet_the_declared_floors():
    from importlib.metadata import version

    for requirement in PROJECT["dependencies"]:
        name = re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]
        if ">=" not in requirement:
            continue
        installed = tuple(int(p) for p in re.findall(r"\d+", version(name))[:len(_floor(requirement))])
        assert installed >= _floor(requirement), (requirement, version(name))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX")
def test_the_torch_floor_is_what_the_code_uses():
    """The oldest torch API in the code: the safe_globals context manager (torch 2.5)."""
    import torch

    assert hasattr(torch.serialization, "safe_globals")


def test_the_package_data_ships_with_the_imported_package():
    """Every file the package-data globs name in src/ is beside the imported package: configs, class names,
    model configs and the shipped toy weights. In `make test-lowest` (DEFT_EXPECT_INSTALLED=1) the package
    is the non-editable install, so this checks the wheel's contents, and that the tests do not import src/."""
    import deft_lightning

    installed = Path(deft_lightning.__file__).resolve().parent
    source = REPO_ROOT / "src" / "deft_lightning"
    if os.environ.get("DEFT_EXPECT_INSTALLED"):
        assert source.resolve() != installed, f"deft_lightning was imported from the source tree {installed}"
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["deft_lightning"]
    declared = sorted({path.relative_to(source) for pattern in patterns for path in source.glob(pattern)})
    assert any(str(p).endswith(".safetensors") for p in declared) and any(p.name == "train.yaml" for p in declared)
    missing = [str(p) for p in declared if not (installed / p).is_file()]
    assert not missing, f"not shipped in {installed}: {missing}"
