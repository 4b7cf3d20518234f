"""One run directory, one writer: the lock, ``resume``'s config check, and no empty folder left by a failure.

:func:`open_run` wraps every entry point's work:

- **Lock.** The launching process takes an exclusive ``flock`` on ``RUN/.lock`` (and writes its pid,
  host and start time into it) for as long as it runs; a second process that tries to write the same
  directory fails at once with a :class:`RunDirectoryError` naming the holder. Ranks > 0 of the same
  launch (Lightning's ``ddp`` children, SLURM / torchrun tasks) neither lock nor write the config.
- **Resume.** With ``resume``, the stored ``config.yaml`` is compared with this run's config; any
  difference outside :data:`RUNTIME_KEYS` (which devices, how many workers, where files live, how it is
  logged) is refused, listing the differing keys, before anything is rewritten.
- **Failure.** A run that fails before writing anything but its config (a bad option, a missing file)
  removes its directory, so that ``aggregate`` and ``ls`` never show it. A run that got further keeps its
  checkpoints and finished phases, for ``resume``.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from deft_lightning.errors import RunDirectoryError
from deft_lightning.io import write_text

LOCK_FILE = ".lock"
CONFIG_FILE = "config.yaml"
# What a run writes before any result: removed with the directory when the run fails this early.
BOOKKEEPING = {CONFIG_FILE, LOCK_FILE, ".hydra", "logs"}
# Config keys that may differ on resume: they change where and how a run executes, not its results.
# A key matches itself and everything below it.
RUNTIME_KEYS = (
    "resume", "paths", "logger", "report",
    "trainer.devices", "trainer.accelerator", "trainer.strategy", "trainer.num_nodes",
    "trainer.enable_progress_bar", "trainer.log_every_n_steps",
    "data.num_workers", "data.pin_memory", "data.persistent_workers",
    "data.root", "data.cache_dir",  # the DataModule's copies of dataset.root and paths.cache_dir
    "callbacks.progress_bar", "callbacks.extra", "callbacks.model_summary", "callbacks.bar", "callbacks.epoch_lines",
    "callbacks.stop_on_signal", "trainer.enable_model_summary",
    "dataset.root", "detector.clip.weights", "backbone.model.weights", "backbone.model.cache_dir",
)


def is_launch_rank_zero() -> bool:
    """False in a process that a launcher started as a rank > 0 of a run (it shares rank 0's directory)."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        value = os.environ.get(name)
        if value not in (None, "") and value.isdigit() and int(value) > 0:
            return False
    return True


@contextmanager
def open_run(cfg: DictConfig) -> Iterator[Path]:
    """The run directory, locked and holding this run's ``config.yaml`` for the duration of the block."""
    run_dir = Path(str(cfg.paths.output_dir))
    if not is_launch_rank_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        yield run_dir
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()  # raises RunDirectoryError: the directory belongs to another process, leave it alone
    try:
        if cfg.get("resume"):
            check_resume_config(cfg, run_dir)
        write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))
        try:
            yield run_dir
        except BaseException as error:
            from deft_lightning import interrupts

            if interrupts.received() is None and not isinstance(error, SystemExit):
                remove_if_empty(run_dir, created)
            raise
    finally:
        lock.release()


def remove_if_empty(run_dir: Path, created: bool = True) -> bool:
    """Remove ``run_dir`` when it holds nothing but bookkeeping (and its parent when that is left empty)."""
    if not run_dir.is_dir():
        return False
    for entry in run_dir.iterdir():
        bookkeeping = entry.name in BOOKKEEPING or (entry.is_file() and entry.name.endswith(".log"))
        empty_dir = entry.is_dir() and not any(p.is_file() for p in entry.rglob("*"))
        if not (bookkeeping or empty_dir):
            return False
    if (run_dir / "logs").is_dir() and any(p.name.startswith("wandb") and p.is_dir() for p in (run_dir / "logs").iterdir()):
        return False  # a W&B run was started: keep its local files
    shutil.rmtree(run_dir, ignore_errors=True)
    from deft_lightning.resolvers import run_stamp

    if created or run_dir.name == run_stamp():  # a default run directory: its per-setting folder too
        try:
            run_dir.parent.rmdir()  # the per-setting folder above a default run directory, if now empty
        except OSError:
            pass
    return True


# ----- the lock --------------------------------------------------------------------------------------
class RunLock:
    """An exclusive, non-blocking ``flock`` on ``RUN/.lock``, released when the process ends."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunDirectoryError(
                f"run directory {self.path.parent} is in use by another process ({holder}; lock file "
                f"{self.path}). Wait for that run to end, or give this one its own directory (leave hydra.run.dir "
                "at its default, which is unique per process)."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid={os.getpid()} host={socket.gethostname()} since={time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"


# ----- resume's config check ---------------------------------------------------------------------------
def check_resume_config(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse to resume ``run_dir`` with settings that change results; name every differing key."""
    stored_path = run_dir / CONFIG_FILE
    if not stored_path.is_file():
        return
    try:
        stored = OmegaConf.to_container(OmegaConf.load(stored_path), resolve=False)
    except Exception as error:  # noqa: BLE001  (any parse error: the file is damaged)
        raise RunDirectoryError(f"resume: {stored_path} is not a readable config ({type(error).__name__}: {error}); "
                                "restore it, or start a new run without resume") from None
    current = OmegaConf.to_container(cfg, resolve=True)
    differences = config_differences(stored if isinstance(stored, dict) else {}, current)
    if differences:
        shown = "; ".join(f"{key}: stored {old!r}, now {new!r}" for key, old, new in differences[:12])
        more = f" (and {len(differences) - 12} more)" if len(differences) > 12 else ""
        raise RunDirectoryError(
            f"resume: this run's config differs from the one stored in {stored_path} in keys that change "
            f"results: {shown}{more}. Resume with the original settings, or start a new run (without resume) "
            f"for the new ones. Keys that may differ: {', '.join(RUNTIME_KEYS)}."
        )


_MISSING = "<absent>"


def config_differences(stored: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, stored value, current value) for every result-changing difference, sorted by key."""
    old, new = _flatten(stored), _flatten(current)
    keys = sorted((set(old) | set(new)) - {k for k in set(old) | set(new) if _is_runtime(k)})
    return [(k, old.get(k, _MISSING), new.get(k, _MISSING)) for k in keys if old.get(k, _MISSING) != new.get(k, _MISSING)]


def _is_runtime(key: str) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in RUNTIME_KEYS)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        if not value and prefix:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}
