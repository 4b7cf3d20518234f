"""Resume: a run SIGKILLed in phase 1 and again in phase 2 ends exactly like an uninterrupted one.

Checkpoints are written atomically after every epoch with the RNG states, phase 1 is not repeated
once its summary exists, and ``selection.csv`` is never visible half-written.
"""

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_runs import FAST_DEMO, run_cli, start_cli
from deft_lightning.pipeline.checkpoints import AtomicCheckpointIO, build_checkpoint_callback
from deft_lightning.resolvers import resume_run_dir

NUM_TRAIN = 120
# more epochs than the demo, so that there is a checkpoint to resume from and work left after it
SETTINGS = FAST_DEMO + [f"dataset.reader.num_train={NUM_TRAIN}", "detector.epochs=4", "backbone.epochs=3"]
THROTTLE = ["+callbacks.extra.throttle._target_=cli_runs.Throttle", "+callbacks.extra.throttle.seconds=0.15"]
IGNORED_PARTS = {"logs", ".hydra"}  # per-attempt logs (a resumed attempt starts a new CSV version)


def artefacts(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*")
            if p.is_file() and not IGNORED_PARTS & set(p.relative_to(run).parts) and p.suffix != ".log"}


class SelectionWatcher(threading.Thread):
    """Polls selection.csv while runs are going: it must be absent or complete, never partial."""

    def __init__(self, path: Path, rows: int) -> None:
        super().__init__(daemon=True)
        self.path, self.rows = path, rows
        self.seen_complete = 0
        self.problems: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                text = self.path.read_text()
            except FileNotFoundError:
                text = None
            if text is not None:
                lines = text.splitlines()
                if len(lines) != self.rows + 1 or not text.endswith("\n"):
                    self.problems.append(f"{len(lines)} lines")
                else:
                    self.seen_complete += 1
            time.sleep(0.01)


def kill_when(process, path: Path, timeout: float = 300) -> None:
    """SIGKILL the whole process group as soon as ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {path.name} appeared")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def read_selection(run: Path) -> list[dict]:
    with open(run / "detection" / "selection.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """(run directory, cache override) of one uninterrupted run with SETTINGS, shared by the resume tests."""
    root = tmp_path_factory.mktemp("uninterrupted")
    cache = [f"paths.cache_dir={root / 'cache'}"]
    run_cli(*SETTINGS, *cache, f"hydra.run.dir={root / 'reference'}")
    return root / "reference", cache


def assert_same_results(run: Path, reference: Path) -> None:
    assert read_selection(run) == read_selection(reference)
    np.testing.assert_array_equal(np.load(run / "detection" / "pred_probs.npy"),
                                  np.load(reference / "detection" / "pred_probs.npy"))
    for name in ("detection/summary.json", "adaptation/metrics.json"):
        assert json.loads((run / name).read_text()) == json.loads((reference / name).read_text()), name


@pytest.mark.slow
def test_killed_twice_then_resumed_equals_an_uninterrupted_run(tmp_path, uninterrupted):
    reference, cache = uninterrupted

    run = tmp_path / "resumed"
    watcher = SelectionWatcher(run / "detection" / "selection.csv", NUM_TRAIN)
    watcher.start()
    try:
        # 1. killed in phase 1, right after its first epoch's checkpoint
        first = start_cli(*SETTINGS, *THROTTLE, *cache, f"hydra.run.dir={run}", log_path=tmp_path / "attempt1.log")
        kill_when(first, run / "checkpoints" / "detection" / "last.ckpt")
        assert not (run / "detection" / "summary.json").exists()
        assert torch.load(run / "checkpoints" / "detection" / "last.ckpt", weights_only=True)["epoch"] < 3

        # 2. resumed (resume=PATH names the run directory), killed in phase 2 after its first checkpoint
        second = start_cli(*SETTINGS, *THROTTLE, *cache, f"resume={run}", log_path=tmp_path / "attempt2.log")
        kill_when(second, run / "checkpoints" / "adaptation" / "last.ckpt")
        assert (run / "detection" / "summary.json").is_file() and not (run / "adaptation" / "metrics.json").exists()
        summary_after_phase1 = (run / "detection" / "summary.json").read_text()

        # 3. resumed to the end: phase 1 is reused, not repeated
        result = run_cli(*SETTINGS, *cache, "resume=true", f"hydra.run.dir={run}")
        assert "Phase 1 already complete" in result.stdout
        assert (run / "detection" / "summary.json").read_text() == summary_after_phase1
    finally:
        watcher.stop.set()
        watcher.join()
    assert not watcher.problems, watcher.problems
    assert watcher.seen_complete > 0

    # same files as the uninterrupted run, no temporary file left behind
    assert artefacts(run) == artefacts(reference)
    assert not [p for p in run.rglob("*.tmp")]

    # same results: RNG states travel with the checkpoints, so the resumed epochs draw the same numbers
    assert read_selection(run) == read_selection(reference)
    np.testing.assert_array_equal(np.load(run / "detection" / "pred_probs.npy"),
                                  np.load(reference / "detection" / "pred_probs.npy"))
    np.testing.assert_array_equal(np.load(run / "detection" / "online_mask.npy"),
                                  np.load(reference / "detection" / "online_mask.npy"))
    for name in ("detection/summary.json", "adaptation/metrics.json"):
        assert json.loads((run / name).read_text()) == json.loads((reference / name).read_text()), name
    rows = read_selection(run)
    assert len(rows) == NUM_TRAIN and all(int(r["is_clean"]) == (float(r["p_clean"]) > 0.5) for r in rows)


@pytest.mark.slow
def test_sigterm_exits_143_keeping_a_resumable_checkpoint_and_resume_equals_an_uninterrupted_run(tmp_path, uninterrupted):
    """A SLURM preemption or ``kill``: status 143, last.ckpt of the last finished epoch, resume finishes the same."""
    reference, cache = uninterrupted
    run = tmp_path / "preempted"
    log = tmp_path / "attempt1.log"
    slow = [THROTTLE[0], "+callbacks.extra.throttle.seconds=0.5"]  # a wide window after the first checkpoint
    first = start_cli(*SETTINGS, *slow, *cache, f"hydra.run.dir={run}", log_path=log)
    last = run / "checkpoints" / "detection" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists():  # mid phase 1: after its first epoch, well before its last
        assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
    os.killpg(first.pid, signal.SIGTERM)
    assert first.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    assert "interrupted by SIGTERM" in log.read_text()
    assert torch.load(last, weights_only=True)["epoch"] < 3, log.read_text()[-3000:]
    assert not (run / "detection" / "summary.json").exists() and not [p for p in run.rglob("*.tmp")]

    run_cli(*SETTINGS, *cache, f"resume={run}")
    assert artefacts(run) == artefacts(reference)
    assert_same_results(run, reference)


def test_checkpoint_is_written_every_epoch_under_a_fixed_name(tmp_path):
    callback = build_checkpoint_callback(tmp_path, "detection")
    assert callback.dirpath == str(tmp_path / "checkpoints" / "detection")
    assert callback.filename == "last" and callback.save_top_k == 1 and callback.every_n_epochs == 1
    assert callback._save_on_train_epoch_end is True and callback._enable_version_counter is False


def test_atomic_checkpoint_keeps_the_previous_file_when_a_save_fails(tmp_path):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1}, target)
    with pytest.raises(Exception):
        io.save_checkpoint({"epoch": 2, "unpicklable": lambda: None}, target)
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_resume_path_names_the_run_directory():
    assert resume_run_dir("/runs/a", "default") == "/runs/a"
    assert resume_run_dir(True, "default") == "default"
    assert resume_run_dir(False, "default") == "default"
    assert resume_run_dir("true", "default") == "default"
