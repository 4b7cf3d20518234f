"""Running the real command line in a subprocess, as a user would (multirun, W&B, DDP, kills).

Lightning's ``ddp`` and Hydra's multirun must not see pytest's environment (a ``LOCAL_RANK`` or
``PYTEST_*`` variable changes what they do), so the child gets a cleaned copy of it.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

DROPPED_PREFIXES = ("PYTEST_", "PL_", "WANDB_")
DROPPED = {"LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
           "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_NAME", "SLURM_PROCID"}

# The offline demo, made small: every subprocess run of these tests starts from here.
FAST_DEMO = ["experiment=demo", "data.num_workers=0", "callbacks.progress_bar=false"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED and not k.startswith(DROPPED_PREFIXES)}
    # src: works with or without the editable install; tests: test-only callbacks given by _target_
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root / "src"), str(root / "tests"), env.get("PYTHONPATH", "")) if p)
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def train_command(*overrides: str, module: str = "deft_lightning.train") -> list[str]:
    return [sys.executable, "-m", module, *overrides]


def run_cli(*overrides: str, env: dict[str, str] | None = None, timeout: float = 600,
            module: str = "deft_lightning.train") -> subprocess.CompletedProcess:
    """Run to completion; fail with the output's tail when the command fails."""
    result = subprocess.run(train_command(*overrides, module=module), env=env or clean_env(), capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def start_cli(*overrides: str, env: dict[str, str] | None = None, log_path: Path | None = None) -> subprocess.Popen:
    """Start in its own process group (so that a kill reaches every process it started)."""
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(train_command(*overrides), env=env or clean_env(), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


class Throttle(Callback):
    """Test-only callback: sleeps after each training batch, so that a test can reliably interrupt a
    phase between two checkpoints. Sleeping draws no random numbers, so results are unchanged."""

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = float(seconds)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds)


# ----- W&B offline runs, read back without an account ------------------------------------------------
# An offline run's ``run-<id>.wandb`` is W&B's record log: 32 KiB blocks of chunks with a 7-byte header
# (crc, length, kind), holding protobuf ``Record`` messages.
BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path):
    """Records of an offline run file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    position, pending = 7, b""
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER:  # block trailer too short for a header: padding
            position += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position:position + HEADER])
        if position + HEADER + length > len(data):  # still being written
            return
        chunk = data[position + HEADER:position + HEADER + length]
        position += HEADER + length
        if kind in (FULL, FIRST):
            pending = chunk
        elif kind in (MIDDLE, LAST):
            pending += chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def read_offline_run(run_dir, wait: float = 30.0):
    """What a dashboard would show: run metadata, config keys, history keys, logged image keys.

    W&B's service process writes the file asynchronously and may still be flushing it just after
    ``wandb.finish()`` returns, so this waits (up to ``wait`` seconds) for the run's exit record.
    """
    deadline = time.monotonic() + wait
    while True:
        info = _read_offline_run(run_dir)
        if info["exited"] or time.monotonic() > deadline:
            return info
        time.sleep(0.2)


def _read_offline_run(run_dir):
    (path,) = run_dir.glob("run-*.wandb")
    run, config, history, exited = None, set(), set(), False
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            config |= {item.key for item in record.run.config.update}
        elif kind == "config":
            config |= {item.key for item in record.config.update}
        elif kind == "history":
            history |= {item.key or "/".join(item.nested_key) for item in record.history.item}
        elif kind == "exit":
            exited = True
    if run is None:
        return {"exited": False}
    return {"id": run.run_id, "group": run.run_group, "job_type": run.job_type, "name": run.display_name,
            "config": config, "history": history, "exited": exited,
            "images": sorted(p.name for p in run_dir.glob("files/media/images/**/*.png"))}


def wandb_processes(marker: str) -> list:
    """Processes with 'wandb' in their name or command line started with DEFT_TEST_MARKER=marker."""
    import psutil

    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            text = " ".join([process.info["name"] or ""] + (process.info["cmdline"] or []))
            if "wandb" in text.lower() and process.environ().get("DEFT_TEST_MARKER") == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
