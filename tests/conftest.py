"""Shared test setup: offline, quiet, and a helper composing the real Hydra config tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def compose(overrides: list[str], config_name: str = "train"):
    """The composed config exactly as ``python -m deft_lightning.train`` would build it."""
    from deft_lightning.cli import compose_config

    return compose_config(overrides, config_name)


@pytest.fixture
def demo_overrides(tmp_path: Path) -> list[str]:
    """The offline demo, writing into a temporary run directory and cache."""
    return [
        "experiment=demo",
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "callbacks.progress_bar=false",
    ]
