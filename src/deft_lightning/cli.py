"""What every ``python -m deft_lightning.<command>`` entry point shares.

Exit statuses: 0 done; 2 a user error (:class:`deft_lightning.errors.UserError`: a bad file, path or
option), printed as one paragraph on stderr without a traceback; 1 an internal error, with its
traceback; 143 / 130 stopped by SIGTERM / SIGINT (the last per-epoch checkpoint is kept: continue with
``resume=RUN_DIR``). Inside a multirun a failed job does not end the sweep: its error is printed and
recorded, and the sweep reports every failed job at its end (``deft_lightning.sweep``).
Summaries are printed by global rank 0 only.
"""

from __future__ import annotations

import signal
import sys
import traceback
import warnings
from typing import Callable, TypeVar

from deft_lightning import interrupts
from deft_lightning.errors import UserError

USER_ERROR_STATUS = 2
INTERNAL_ERROR_STATUS = 1
T = TypeVar("T")


_task_started = False


def main_entry(hydra_main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function; Hydra's own failures before the task (a bad override, an unknown
    config group option) are user errors too: Hydra prints them in one paragraph, we exit with status 2."""
    try:
        hydra_main()
    except SystemExit as exit_:
        if exit_.code == 1 and not _task_started:
            sys.exit(USER_ERROR_STATUS)
        raise


def run_entry(function: Callable[..., T], *args) -> T:
    """Call ``function(*args)``; turn user errors and interruptions into their exit statuses."""
    global _task_started
    _task_started = True
    # our loaders are in-memory or deliberately single-process on CPU; Lightning's hint is noise
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    interrupts.install()
    try:
        return function(*args)
    except BaseException as error:
        signum = interrupts.received()
        if signum is not None and not isinstance(error, UserError):
            # the interruption surfaces as Lightning's SIGTERMException (a SystemExit with status 0),
            # our Interrupted, a KeyboardInterrupt, or a DataLoader worker killed by the same signal
            print(interrupted_message(signum, args), file=sys.stderr)
            sys.exit(interrupts.exit_status(signum))
        user_error = as_user_error(error)
        if user_error is not None:
            print(f"\nerror: {user_error}", file=sys.stderr)
            if in_multirun():
                raise user_error from None  # the sweep records the failure and goes on with the next job
            sys.exit(USER_ERROR_STATUS)
        if not isinstance(error, Exception):
            raise  # SystemExit, KeyboardInterrupt without a signal
        # an internal error: its full traceback (Hydra would shorten some, e.g. instantiate's, to one line)
        traceback.print_exc()
        if in_multirun():
            raise  # recorded by the sweep, which goes on
        sys.exit(INTERNAL_ERROR_STATUS)


def as_user_error(error: BaseException) -> UserError | None:
    """``error`` itself, or the user error that Hydra's ``instantiate`` wrapped, else None."""
    from hydra.errors import InstantiationException

    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error if isinstance(error, UserError) else None


def interrupted_message(signum: int, args: tuple) -> str:
    name = signal.Signals(signum).name
    run_dir = None
    cfg = args[0] if args else None
    try:
        run_dir = cfg.paths.output_dir if cfg is not None else None
    except Exception:  # not a run config
        run_dir = None
    where = f" in {run_dir}" if run_dir else ""
    return (f"\ninterrupted by {name}: stopped{where}; checkpoints/<phase>/last.ckpt holds the last completed "
            f"epoch. Continue with the same command and resume={run_dir or 'RUN_DIR'}.")


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun (``-m``)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # Hydra's config is not set (a test calling the entry function directly)
        return False


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
