"""What every ``python -m deft_lightning.<command>`` entry point shares.

Exit statuses: 0 done; 2 a user error (:class:`deft_lightning.errors.UserError`: a bad file, path or
option), printed as one paragraph on stderr without a traceback; 1 an internal error, with its
traceback; 143 / 130 stopped by SIGTERM / SIGINT (the last per-epoch checkpoint is kept: continue with
``resume=RUN_DIR``). Inside a multirun a failed job does not end the sweep: its error is printed and
recorded, and the sweep reports every failed job at its end (``deft_lightning.sweep``).
Summaries are printed by global rank 0 only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Callable, TypeVar

from deft_lightning import interrupts
from deft_lightning.errors import UserError

USER_ERROR_STATUS = 2
INTERNAL_ERROR_STATUS = 1
T = TypeVar("T")


_task_started = False


def main_entry(hydra_main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function; Hydra's own failures before the task (a bad override, an unknown
    config group option) are user errors too: Hydra prints them in one paragraph, we exit with status 2.

    Bash completion (``-sc install=bash`` / ``-sc query=bash``) goes through :func:`shell_completion`,
    which also serves the ``python -m deft_lightning.<command>`` form and nested options (``paper/...``).
    """
    if shell_completion(hydra_main):
        return
    try:
        check_launcher_plugin(sys.argv[1:])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)
    try:
        hydra_main()
    except SystemExit as exit_:
        if exit_.code == 1 and not _task_started:
            sys.exit(USER_ERROR_STATUS)
        raise


# ----- optional launcher plugins ---------------------------------------------------------------------
SLURM_INSTALL = 'pip install "hydra-submitit-launcher>=1.2" (from a checkout of deft_lightning: pip install ".[slurm]")'
# hydra/launcher options that need Hydra's submitit plugin: ours (conf/hydra/launcher/slurm.yaml) and its own
SUBMITIT_LAUNCHERS = ("slurm", "submitit_slurm", "submitit_local")


def check_launcher_plugin(argv: list[str]) -> None:
    """``hydra/launcher=slurm`` without hydra-submitit-launcher: a hint naming the pip line, instead of
    Hydra's "Could not find 'hydra/launcher/submitit_slurm'" (raised as a UserError)."""
    for arg in argv:
        match = re.fullmatch(r"[+]{0,2}hydra/launcher=(\S+)", arg)
        if match is None or match.group(1) not in SUBMITIT_LAUNCHERS:
            continue
        import importlib.util

        try:
            found = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise UserError(
                f"{arg} needs Hydra's submitit launcher plugin, which is not installed. Install it with "
                f"{SLURM_INSTALL}, or leave hydra/launcher out to run the jobs one after another on this machine."
            )


# ----- shell completion -----------------------------------------------------------------------------
# Hydra's bash completion has two gaps for this app: its install script completes `python FILE.py` and
# installed scripts only (not `python -m package.module`), and its query lists a group's own options
# but not those of its sub-groups (experiment=demo, not experiment=paper/cifar100). We print our own
# install script and add the nested options to Hydra's answer.
COMPLETED_COMMANDS = ("deft-train", "deft-detect")
COMPLETED_MODULES = ("deft_lightning.train", "deft_lightning.detect")
_PYTHON_M = re.compile(r"^\s*\S*python[0-9.]*\s+-m\s+(\S+)(\s+|$)")

BASH_SCRIPT = r"""# deft_lightning bash completion: `python -m deft_lightning.train|detect ...`, deft-train, deft-detect
_deft_lightning_completion()
{
    local words=($COMP_LINE) helper
    case "${words[0]}" in
        deft-train|deft-detect) helper="${words[0]}" ;;
        *python*)
            if [[ "${words[1]}" == "-m" && ( "${words[2]}" == "deft_lightning.train" || "${words[2]}" == "deft_lightning.detect" ) ]]; then
                helper="${words[0]} -m ${words[2]}"
            else
                return  # another python command: the shell's default (file names)
            fi ;;
        *) return ;;
    esac
    local choices word="${COMP_WORDS[$COMP_CWORD]}"
    choices=$(COMP_POINT=$COMP_POINT COMP_LINE=$COMP_LINE $helper -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "$word"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _deft_lightning_completion python python3 deft-train deft-detect
"""
BASH_UNINSTALL = "complete -r python python3 deft-train deft-detect 2>/dev/null; unset -f _deft_lightning_completion\n"


def _completion_request(argv: list[str]) -> str | None:
    """``install=bash`` / ``query=bash`` / ``uninstall=bash`` when argv asks for bash completion, else None."""
    for i, arg in enumerate(argv):
        if arg in ("-sc", "--shell-completion") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--shell-completion="):
            value = arg.split("=", 1)[1]
        else:
            continue
        return value if value in ("install=bash", "query=bash", "uninstall=bash") else None
    return None


def shell_completion(hydra_main: Callable[[], object]) -> bool:
    """Answer a bash completion request (True), or leave the command line to Hydra (False)."""
    request = _completion_request(sys.argv[1:])
    if request is None:
        return False
    if request == "install=bash":
        print(BASH_SCRIPT, end="")
        return True
    if request == "uninstall=bash":
        print(BASH_UNINSTALL, end="")
        return True
    line = os.environ.get("COMP_LINE", "")
    # Hydra strips `python FILE.py` or a script name from the line; `python -m module` it cannot parse
    os.environ["COMP_LINE"] = _PYTHON_M.sub(lambda m: "deft-app" + (m.group(2) and " "), line, count=1)
    answer = io.StringIO()
    try:
        with contextlib.redirect_stdout(answer):
            hydra_main()
    except SystemExit:
        pass
    except Exception:  # a completion must never print a traceback into the shell
        pass
    finally:
        os.environ["COMP_LINE"] = line
    choices = [group_with_equals(choice) for choice in answer.getvalue().split()]
    choices += nested_group_options(line)
    print(" ".join(sorted(set(choices))))
    return True


def group_with_equals(choice: str, conf_dir: Path | None = None) -> str:
    """``detector`` → ``detector=``: Hydra leaves the ``=`` off a group that has sub-groups too
    (``detector/base``), as if it were only a folder; its own options are what a user completes first."""
    match = re.fullmatch(r"(\+?)([\w/]+)", choice)
    if match is None:
        return choice
    root = (conf_dir or Path(__file__).resolve().parent / "conf") / match.group(2)
    return choice + "=" if root.is_dir() and any(root.glob("*.yaml")) else choice


def nested_group_options(line: str, conf_dir: Path | None = None) -> list[str]:
    """``group=sub/option`` for the word being completed (``experiment=pa`` → ``experiment=paper/cifar100``, ...).

    Hydra's completion offers only a group's direct options; its sub-groups' options are valid values of
    the group too (``experiment=paper/cifar100``).
    """
    if not line or line.endswith(" "):
        return []
    word = line.split()[-1]
    match = re.fullmatch(r"([+~]?)([\w./-]+)=([\w./-]*)", word)
    if match is None:
        return []
    prefix, group, value = match.groups()
    root = (conf_dir or Path(__file__).resolve().parent / "conf") / group
    if not root.is_dir() or ".." in group.split("/"):
        return []
    options = []
    for path in sorted(root.rglob("*.yaml")):
        relative = path.relative_to(root).with_suffix("").as_posix()
        # base/: the building blocks other options name in their defaults, not choices of their own
        if "/" in relative and relative.startswith(value) and not relative.startswith("base/"):
            options.append(f"{prefix}{group}={relative}")
    return options


def run_entry(function: Callable[..., T], *args) -> T:
    """Call ``function(*args)``; turn user errors and interruptions into their exit statuses."""
    global _task_started
    _task_started = True
    silence_known_noise()
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


# ----- noise every run would print ------------------------------------------------------------------
# Warnings and log records that say nothing about the user's run, each targeted by its message.
QUIET_WARNINGS = (
    # our loaders are in-memory or deliberately single-process on CPU
    r".*does not have many workers.*",
    # Lightning's own use of a torch API deprecated in torch 2.9+ (lightning/pytorch/utilities/_pytree.py)
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    # a dataset without a test split (or a val_fraction of 0) validates on an empty list on purpose
    r".*Total length of `.*` across ranks is zero.*",
    r".*val_dataloader.* does not have many workers.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",
)
QUIET_LOG_MESSAGES = {
    # Lightning's advertisement when litlogger is not installed; its note that callbacks.model_summary
    # (conf/callbacks/default.yaml) replaces its own default summary
    "lightning.pytorch.utilities.rank_zero": ("litlogger", "Trainer already configured with model summary callbacks"),
    "lightning.fabric.utilities.rank_zero": ("litlogger",),
}


class _DropMessages(logging.Filter):
    def __init__(self, needles: tuple[str, ...]) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(needle in message for needle in self.needles)


class ConsoleFilter(logging.Filter):
    """Keeps records logged with ``extra={"deft_console": False}`` off the console handler (the per-epoch
    lines while a progress bar is drawn on the terminal); the log file still gets them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return bool(getattr(record, "deft_console", True))


def silence_known_noise() -> None:
    """Install the filters of :data:`QUIET_WARNINGS` and :data:`QUIET_LOG_MESSAGES` (idempotent)."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, needles in QUIET_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(needles))


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
