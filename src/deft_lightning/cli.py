"""What every ``python -m deft_lightning.<command>`` entry point shares.

Known user errors (missing data, unavailable weights, bad options) become one clear paragraph on
stderr and exit code 2 instead of a traceback; summaries are printed by global rank 0 only.
"""

from __future__ import annotations

import sys
import warnings
from typing import Callable, TypeVar

from deft_lightning.data.base import DatasetError
from deft_lightning.models.clip import WeightsUnavailableError

USER_ERRORS = (DatasetError, WeightsUnavailableError, FileNotFoundError, ValueError)
T = TypeVar("T")


def run_entry(function: Callable[..., T], *args) -> T:
    """Call ``function(*args)``; on a user error print it and exit with status 2."""
    # our loaders are in-memory or deliberately single-process on CPU; Lightning's hint is noise
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    try:
        return function(*args)
    except USER_ERRORS as error:
        print(f"\nerror: {error}", file=sys.stderr)
        sys.exit(2)


def is_rank_zero() -> bool:
    """Global rank 0, whoever started the process (Lightning, SLURM, torchrun)."""
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank == 0


def compose_config(overrides: list[str], config_name: str = "train"):
    """The config ``python -m deft_lightning.<config_name>`` would build from these overrides, without
    Hydra's main (no run directory): for drivers that call ``train()`` in-process, and for tests."""
    from hydra import compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from deft_lightning import resolvers  # noqa: F401  (registers the config resolvers)

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="deft_lightning.conf", version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)
