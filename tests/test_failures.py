"""Honest failure semantics: exit statuses, one paragraph for user errors, tracebacks for bugs, signals.

0 done; 2 user error (one paragraph, no traceback); 1 internal error (traceback kept); 130 / 143
SIGINT / SIGTERM (the last per-epoch checkpoint kept for ``resume``).
"""

import os
import signal
import subprocess
import time
import zipfile

import pytest
import torch

from cli_runs import FAST_DEMO, clean_env, start_cli, train_command
from conftest import compose
from deft_lightning import errors
from deft_lightning.pipeline.checkpoints import check_checkpoint_file, resume_checkpoint

QUICK = FAST_DEMO + ["phases=[detect]", "detector=label_match"]  # zero-shot: no training, ~20 s
SLOW_PHASE1 = FAST_DEMO + ["dataset.reader.num_train=120", "detector.epochs=4", "phases=[detect]",
                           "+callbacks.extra.throttle._target_=cli_runs.Throttle", "+callbacks.extra.throttle.seconds=0.15"]


class Boom:
    """Test-only 'callback' whose construction fails like an internal bug would."""

    def __init__(self) -> None:
        raise RuntimeError("deliberate internal failure from test_failures.Boom")


def run(*overrides, timeout=300, module="deft_lightning.train"):
    return subprocess.run(train_command(*overrides, module=module), env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def test_user_errors_derive_from_user_error_and_bugs_do_not():
    assert issubclass(errors.ConfigError, errors.UserError) and issubclass(errors.RunDirectoryError, errors.UserError)
    from deft_lightning import cli

    assert not hasattr(cli, "USER_ERRORS")  # no broad ValueError catch any more


def test_a_bad_option_is_one_paragraph_with_status_2_and_leaves_no_run_directory(tmp_path):
    result = run(*QUICK, "detector.kind=bogus", f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'c'}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "detector.kind" in result.stderr and "bogus" in result.stderr
    assert "Traceback" not in result.stderr and "File \"" not in result.stderr
    runs = tmp_path / "logs" / "runs"
    assert not runs.exists() or not any(runs.iterdir()), sorted(runs.rglob("*"))  # nothing for aggregate to table


def test_an_internal_error_keeps_its_traceback_and_exits_1(tmp_path):
    result = run(*QUICK, "+callbacks.extra.boom._target_=test_failures.Boom", f"hydra.run.dir={tmp_path / 'run'}",
                 f"paths.cache_dir={tmp_path / 'c'}")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "deliberate internal failure" in result.stderr
    assert "Traceback" in result.stderr
    assert "\nerror: " not in result.stderr  # not dressed up as a user error


def wait_for(path, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended (exit {process.returncode}) before {path.name} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigint_ends_with_status_130_and_keeps_the_epoch_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    log = tmp_path / "attempt.log"
    process = start_cli(*SLOW_PHASE1, f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'c'}", log_path=log)
    last = run_dir / "checkpoints" / "detection" / "last.ckpt"
    wait_for(last, process)
    os.kill(process.pid, signal.SIGINT)
    assert process.wait(timeout=120) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "interrupted by SIGINT" in text and f"resume={run_dir}" in text
    assert torch.load(last, weights_only=True)["epoch"] < 3  # a resumable per-epoch checkpoint, not the end
    assert not (run_dir / "detection" / "summary.json").exists()


def test_a_truncated_checkpoint_is_named_with_what_to_do(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"epoch": 1, "state_dict": {"w": torch.zeros(1000)}}, good)
    check_checkpoint_file(good, "detection")
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "detection" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert not zipfile.is_zipfile(last)
    cfg = compose(["experiment=demo", "resume=true", f"paths.output_dir={run_dir}"])
    with pytest.raises(errors.ArtifactError) as caught:
        resume_checkpoint(cfg, run_dir, "detection")
    message = str(caught.value)
    assert str(last) in message and "Delete it" in message and "without resume" in message
    last.write_bytes(b"")  # zero bytes: the same
    with pytest.raises(errors.ArtifactError, match="0 bytes"):
        resume_checkpoint(cfg, run_dir, "detection")


def test_a_truncated_checkpoint_on_resume_is_one_paragraph_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "detection" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 truncated")
    result = run(*FAST_DEMO, "phases=[detect]", f"resume={run_dir}", f"paths.cache_dir={tmp_path / 'c'}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert str(last) in result.stderr and "Traceback" not in result.stderr
    assert last.is_file()  # the run dir with its (damaged) checkpoint is left for the user to look at


def test_an_interruption_ends_with_128_plus_the_signal_whatever_it_surfaced_as(monkeypatch):
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from deft_lightning import cli, interrupts

    def preempted(cfg):
        interrupts._on_sigterm(signal.SIGTERM, None)
        raise SIGTERMException()  # what Lightning's loops raise: a SystemExit with status 0

    def worker_killed(cfg):
        interrupts._received = signal.SIGINT
        raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Interrupt")

    try:
        for function, status in ((preempted, 143), (worker_killed, 130)):
            interrupts.reset()
            with pytest.raises(SystemExit) as caught:
                cli.run_entry(function, None)
            assert caught.value.code == status
    finally:
        interrupts.reset()


def test_validation_and_inference_stop_at_the_next_batch_after_a_signal():
    from types import SimpleNamespace

    from deft_lightning import interrupts
    from deft_lightning.pipeline.trainer import StopOnSignal

    callback, trainer = StopOnSignal(), SimpleNamespace(world_size=1)
    callback.on_predict_batch_end(trainer, None, None, None, 0)  # no signal: nothing happens
    interrupts._received = signal.SIGTERM
    try:
        with pytest.raises(interrupts.Interrupted):
            callback.on_predict_batch_end(trainer, None, None, None, 0)
        with pytest.raises(interrupts.Interrupted):
            callback.on_validation_batch_end(trainer, None, None, None, 0)
        callback.on_predict_batch_end(SimpleNamespace(world_size=2), None, None, None, 0)  # DDP: left to Lightning
    finally:
        interrupts.reset()
