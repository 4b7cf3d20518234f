"""Multirun failure semantics: a failed job does not stop the sweep; the sweep ends listing every failure.

Hydra 1.3's BasicLauncher runs every job of a batch and keeps a failed job's exception in its
``JobReturn``; BasicSweeper then re-raises the *first* failure after the batch (a traceback, status 1,
nothing about the other failures). :class:`JobFailures`, a Hydra callback configured in
``conf/hydra/default.yaml``, records each failed job (in ``SWEEP_DIR/.failed_jobs/<num>.json``, so that
jobs run by another launcher in other processes are counted too), marks the job as handled so the
sweep goes on, and at the end of the sweep prints the list and exits with status 2 when every failure
was a user error (a bad option or file), else 1. ``fail_fast=true`` stops at the first failed job.
Kept free of Lightning and torch: Hydra imports it for every command.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

FAILURES_DIR = ".failed_jobs"


@dataclass
class JobFailure:
    """What a failed job returns to the sweep in place of its exception."""

    num: int
    overrides: list[str]
    error_type: str
    message: str
    user_error: bool

    def line(self) -> str:
        return f"  #{self.num} {' '.join(self.overrides) or '(no overrides)'}: {self.error_type}: {self.message}"


class JobFailures(Callback):
    def __init__(self, fail_fast: bool = False) -> None:
        self.fail_fast = bool(fail_fast)

    # ----- per job ---------------------------------------------------------------------------------
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        record = _record_path(config)
        if record is not None and record.is_file():  # a rerun of this job: forget its earlier failure
            record.unlink()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        record = _record_path(config)
        if record is None or job_return.status != JobStatus.FAILED:
            return
        from deft_lightning.errors import UserError

        error = job_return._return_value
        failure = JobFailure(
            num=int(config.hydra.job.num),
            overrides=list(job_return.overrides or []),
            error_type=type(error).__name__,
            message=" ".join(str(error).split()),
            user_error=isinstance(error, UserError),
        )
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(failure.__dict__, indent=2) + "\n")
        if self.fail_fast:
            print(f"\nsweep stopped at the first failed job (hydra.callbacks.job_failures.fail_fast=true):\n"
                  f"{failure.line()}", file=sys.stderr)
            sys.exit(_status([failure]))
        # handled: the sweep goes on, and reports this failure when it ends
        job_return.status = JobStatus.COMPLETED
        job_return.return_value = failure

    # ----- per sweep -------------------------------------------------------------------------------
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failures = read_failures(config.hydra.sweep.dir)
        if not failures:
            return
        lines = "\n".join(failure.line() for failure in failures)
        print(f"\n{len(failures)} job(s) of the sweep in {config.hydra.sweep.dir} failed:\n{lines}\n"
              "Fix them and rerun the same sweep with hydra.sweep.dir=<that folder> resume=true: "
              "finished jobs are kept.", file=sys.stderr)
        sys.exit(_status(failures))


def read_failures(sweep_dir: str | Path) -> list[JobFailure]:
    folder = Path(sweep_dir) / FAILURES_DIR
    failures = [JobFailure(**json.loads(p.read_text())) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(failures, key=lambda f: f.num)


def _status(failures: list[JobFailure]) -> int:
    return 2 if all(f.user_error for f in failures) else 1


def _record_path(config: DictConfig) -> Path | None:
    """``SWEEP_DIR/.failed_jobs/<num>.json`` for a multirun job; None for a single run."""
    from hydra.types import RunMode

    hydra_cfg = config.hydra
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return Path(str(hydra_cfg.sweep.dir)) / FAILURES_DIR / f"{int(hydra_cfg.job.num)}.json"
