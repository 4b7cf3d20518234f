"""What a run reports: one plain line per epoch on a redirected stdout and in the run's log file, the
final summary there too, and none of the warnings every run used to print."""

import logging
import warnings
from types import SimpleNamespace

import pytest
import torch

from cli_runs import clean_env, run_cli
from deft_lightning.cli import ConsoleFilter, silence_known_noise
from deft_lightning.progress import EpochLines

NOISE = ("litlogger", "LeafSpec", "anonymous", "across ranks is zero")


@pytest.mark.slow
def test_a_redirected_run_prints_one_line_per_epoch_into_stdout_and_train_log(tmp_path):
    pytest.importorskip("wandb")
    # stdout is a pipe here, as in a batch job; W&B offline so that its warnings are exercised too
    result = run_cli("experiment=demo", "debug=fast", "data.num_workers=0", "logger=wandb",
                     f"paths.log_dir={tmp_path}", env=clean_env(WANDB_MODE="offline", WANDB_SILENT="false",
                                                                WANDB_CONFIG_DIR=str(tmp_path / "wandb-config")))
    (log_file,) = tmp_path.glob("runs/*/*/train.log")
    log = log_file.read_text()
    for phase in ("detection", "adaptation"):
        (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith(f"{phase} epoch 1/1 | loss ")]
        assert "acc test " in line and line in log  # the same plain line in the log file (after its time stamp)
    detection_line = next(ln for ln in result.stdout.splitlines() if ln.startswith("detection epoch"))
    assert "online clean set: kept " in detection_line and " F1 " in detection_line  # demo knows the true labels
    assert "DEFT summary" in result.stdout and "DEFT summary" in log
    everything = result.stdout + result.stderr + log
    for needle in NOISE:
        assert needle not in everything, needle
    assert "v_num" not in everything and "━" not in result.stdout  # no bar on a pipe
    # Lightning's own messages reach the console once per trainer (two phases), not also through the root logger
    console = result.stdout + result.stderr
    assert console.count("GPU available:") == 2, console.count("GPU available:")
    assert log.count("GPU available:") == 2  # and the log file keeps them


def test_the_known_warnings_are_silenced_by_message_only():
    silence_known_noise()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        silence_known_noise()  # after simplefilter: the run installs them after everything else
        warnings.warn("Total length of `list` across ranks is zero. Please make sure this was your intention.")
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`")
        warnings.warn("something the user must see")
    assert [str(w.message) for w in caught] == ["something the user must see"]


def test_the_litlogger_tip_is_dropped_but_other_lightning_info_is_kept(caplog):
    silence_known_noise()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        logger.info("💡 Tip: For seamless cloud logging ... try installing [litlogger](https://pypi.org/project/litlogger/)")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def _trainer(metrics, epoch=0, max_epochs=10):
    return SimpleNamespace(callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
                           current_epoch=epoch, max_epochs=max_epochs, is_global_zero=True)


def test_epoch_line_format_is_one_based_and_names_the_clean_set(caplog):
    lines = EpochLines("detection")
    lines.on_train_epoch_start(None, None)
    for loss in (1.0, 2.0, float("nan")):  # a non-finite batch loss is left out of the mean
        lines.on_train_batch_end(None, None, {"loss": torch.tensor(loss)}, None, 0)
    trainer = _trainer({"train/online_clean_fraction": 0.5, "train/online_precision": 0.9, "train/online_recall": 0.8,
                        "train/online_f1": 0.84706, "val/test_acc": 0.6125, "val/test_acc_best": 0.7}, epoch=2)
    assert lines.format(trainer) == ("detection epoch 3/10 | loss 1.5000 | online clean set: kept 50.00 P 90.00 "
                                     "R 80.00 F1 84.71 | acc test 61.25%")
    with caplog.at_level(logging.INFO, logger="deft_lightning"):
        EpochLines("adaptation", console=False).on_train_epoch_end(_trainer({"val/test_acc": 0.5}), None)
    (record,) = caplog.records
    assert record.getMessage() == "adaptation epoch 1/10 | acc test 50.00%"
    assert not ConsoleFilter().filter(record)  # kept off a terminal that draws a bar; the log file still has it
    assert ConsoleFilter().filter(logging.makeLogRecord({"msg": "other"}))


def test_progress_bar_has_no_v_num(monkeypatch):
    from lightning.pytorch.callbacks import TQDMProgressBar

    from deft_lightning.progress import ProgressBar

    monkeypatch.setattr(TQDMProgressBar, "get_metrics", lambda self, trainer, module: {"v_num": 0, "train/loss": 1.5})
    assert ProgressBar().get_metrics(None, None) == {"train/loss": 1.5}
