"""The library apart from the app (issue 13): the core imports neither Hydra, W&B nor the toy world.

Core = models, modules, data, losses, selection (plus the small shared errors / io / distributed
modules they use); the app (entry points, pipeline, config, reporting, toy world, experiments) builds
on it. Checked in a fresh interpreter, so nothing imported by other tests can hide an import.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import deft_lightning

PACKAGE = Path(deft_lightning.__file__).resolve().parent
CORE = ("models", "modules", "data", "losses", "selection")
APP_ONLY = ("hydra", "omegaconf", "wandb", "deft_lightning.toy", "deft_lightning.pipeline", "deft_lightning.config",
            "deft_lightning.reporting", "deft_lightning.experiments")


def test_importing_the_core_loads_no_hydra_wandb_or_toy_world():
    code = ("import sys; import deft_lightning.models, deft_lightning.modules, deft_lightning.data, "
            "deft_lightning.losses, deft_lightning.selection, deft_lightning.data.readers, deft_lightning.modules.registry; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'wandb') "
            "or m.startswith(('deft_lightning.toy', 'deft_lightning.pipeline', 'deft_lightning.reporting'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", loaded


def test_no_core_source_file_imports_the_app():
    pattern = re.compile(r"^\s*(?:from|import)\s+(" + "|".join(re.escape(name) for name in APP_ONLY) + r")\b", re.M)
    offenders = []
    for package in CORE:
        for path in sorted((PACKAGE / package).rglob("*.py")):
            offenders += [f"{path.relative_to(PACKAGE)}: {m.group(0).strip()}" for m in pattern.finditer(path.read_text())]
    assert offenders == []
