"""Run identity: unique default run directories, one writer per directory, resume's config check, names."""

import os
import socket
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from cli_runs import FAST_DEMO, clean_env, train_command
from conftest import compose
from deft_lightning import errors
from deft_lightning.resolvers import run_name, run_stamp
from deft_lightning.run_dir import RunLock, config_differences, open_run, remove_if_empty

QUICK = FAST_DEMO + ["phases=[detect]", "detector=label_match"]  # zero-shot: no training, ~20 s


def hydra_run_dir(*overrides, config_name="train"):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="deft_lightning.conf", version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    return str(cfg.hydra.run.dir)


def test_run_folder_names_say_which_model_ran_and_drop_the_ratio_when_there_is_none():
    assert run_name("cifar100", "sym", 0.4, "ViT-B-16") == "cifar100-sym0.4-ViT-B-16"
    assert run_name("clothing1m", "real", 0.0, "convnext_tiny.fb_in1k") == "clothing1m-real-convnext_tiny.fb_in1k"
    assert run_name("folder", "none", 0.4, "deft", "hf-hub:org/model") == "folder-none-deft-hf-hub:org_model"
    toy = hydra_run_dir("experiment=toy")
    assert "/runs/toy-sym0.4-deft-toy-clip/" in toy and "clip_vit_b16" not in toy
    assert "/runs/clothing1m-real-convnext_tiny.fb_in1k/" in hydra_run_dir("dataset=clothing1m", "backbone=convnext_t")
    detect = hydra_run_dir("experiment=toy", "noise=none", config_name="detect")
    assert "/detect/toy-none-deft-deft-toy-clip/" in detect
    assert detect.endswith(run_stamp())


def test_the_stamp_is_fixed_per_process_and_different_between_processes():
    assert run_stamp() == run_stamp()
    code = "from deft_lightning.resolvers import run_stamp; print(run_stamp())"
    env = clean_env()
    stamps = {subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()
              for _ in range(3)}
    assert len(stamps) == 3 and all(len(s) > 19 for s in stamps)
    # ranks of one multi-task SLURM step agree on it
    slurm = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2",
                                 "SLURM_PROCID": str(rank)}).stdout.strip() for rank in (0, 1)}
    assert slurm == {"slurm77.0"}


@pytest.mark.slow
def test_two_runs_started_together_with_the_same_settings_get_two_directories(tmp_path):
    overrides = [*QUICK, f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'c'}"]
    first = subprocess.Popen(train_command(*overrides), env=clean_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    second = subprocess.Popen(train_command(*overrides), env=clean_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, [o[-2000:] for o in outputs]
    runs = sorted(p.parent.parent for p in (tmp_path / "logs" / "runs").glob("*/*/detection/summary.json"))
    assert len(runs) == 2 and runs[0] != runs[1]
    assert runs[0].parent == runs[1].parent  # same setting folder, two leaves (time + a per-process token)


def test_a_directory_in_use_is_refused_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        with pytest.raises(errors.RunDirectoryError) as caught:
            RunLock(run_dir).acquire()
        assert f"pid={os.getpid()}" in str(caught.value) and socket.gethostname() in str(caught.value)

        result = subprocess.run(train_command(*QUICK, f"hydra.run.dir={run_dir}"), env=clean_env(),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, result.stderr[-3000:]
        assert "in use by another process" in result.stderr and f"pid={os.getpid()}" in result.stderr
        assert "Traceback" not in result.stderr
        assert run_dir.is_dir() and not (run_dir / "config.yaml").exists()  # the holder's directory is left alone

        # a rank > 0 of the same launch shares the directory: it is not refused
        cfg = compose(["experiment=demo", f"paths.output_dir={run_dir}"])
        os.environ["LOCAL_RANK"] = "1"
        try:
            with open_run(cfg) as opened:
                assert opened == run_dir
        finally:
            del os.environ["LOCAL_RANK"]
    finally:
        lock.release()
    with open_run(compose(["experiment=demo", f"paths.output_dir={run_dir}"])):  # free again once released
        assert (run_dir / ".lock").read_text().startswith(f"pid={os.getpid()} ")


def test_resume_refuses_a_changed_noise_ratio_naming_the_key_but_accepts_runtime_changes(tmp_path):
    run_dir = tmp_path / "run"
    base = ["experiment=demo", f"paths.output_dir={run_dir}", f"paths.cache_dir={tmp_path / 'c'}"]
    with open_run(compose(base)):
        (run_dir / "detection").mkdir()
        (run_dir / "detection" / "summary.json").write_text("{}")
    stored = (run_dir / "config.yaml").read_text()

    with pytest.raises(errors.RunDirectoryError) as caught:
        with open_run(compose(base + ["resume=true", "noise.ratio=0.2"])):
            pass
    message = str(caught.value)
    assert "noise.ratio: stored 0.4, now 0.2" in message and str(run_dir / "config.yaml") in message
    assert (run_dir / "config.yaml").read_text() == stored  # not rewritten
    assert (run_dir / "detection" / "summary.json").is_file()  # and nothing removed

    with open_run(compose(base + ["resume=true", "data.num_workers=3", "trainer.devices=1", "logger=none",
                                  "callbacks.progress_bar=true", f"paths.cache_dir={tmp_path / 'other'}"])):
        pass
    assert "num_workers: 3" in (run_dir / "config.yaml").read_text()


def test_config_differences_names_changed_added_and_removed_keys():
    stored = {"noise": {"ratio": 0.4, "seed": 1}, "seed": 0, "data": {"num_workers": 2}, "paths": {"log_dir": "a"}}
    current = {"noise": {"ratio": 0.4, "mode": "sym"}, "seed": 1, "data": {"num_workers": 8}, "paths": {"log_dir": "b"}}
    assert config_differences(stored, current) == [
        ("noise.mode", "<absent>", "sym"), ("noise.seed", 1, "<absent>"), ("seed", 0, 1)]


def test_a_failed_run_that_wrote_only_bookkeeping_is_removed_and_one_with_results_is_kept(tmp_path):
    cfg = compose(["experiment=demo", f"paths.output_dir={tmp_path / 'a' / 'run'}"])
    with pytest.raises(errors.ConfigError):
        with open_run(cfg) as run_dir:
            (run_dir / "detection").mkdir()  # an empty output folder made before the failure counts as nothing
            (run_dir / "logs" / "detection" / "version_0").mkdir(parents=True)
            (run_dir / "train.log").write_text("")
            raise errors.ConfigError("bad option")
    assert not (tmp_path / "a" / "run").exists()

    kept = tmp_path / "b"
    with pytest.raises(RuntimeError):
        with open_run(compose(["experiment=demo", f"paths.output_dir={kept}"])):
            (kept / "checkpoints" / "detection").mkdir(parents=True)
            (kept / "checkpoints" / "detection" / "last.ckpt").write_bytes(b"x")
            raise RuntimeError("later failure")
    assert (kept / "checkpoints" / "detection" / "last.ckpt").is_file()  # resumable: kept

    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("not ours")
    assert not remove_if_empty(user_dir)  # never removes what a run did not write
    assert (user_dir / "notes.txt").is_file()


def test_stored_config_round_trips_without_differences(tmp_path):
    cfg = compose(["experiment=demo", f"paths.output_dir={tmp_path}"])
    stored = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True)))
    assert config_differences(stored, OmegaConf.to_container(cfg, resolve=True)) == []


def test_a_sweep_config_sent_to_another_process_keeps_its_directory():
    """The submitit launcher pickles the sweep's config to each job: the stamp travels resolved, as `now` does."""
    import pickle

    cfg = OmegaConf.create({"dir": "multiruns/${deft_run_stamp:}"})
    resolved = cfg.dir
    code = "import pickle, sys; import deft_lightning.resolvers; print(pickle.loads(sys.stdin.buffer.read()).dir)"
    other = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(cfg), capture_output=True, env=clean_env())
    assert other.stdout.decode().strip() == resolved


@pytest.mark.slow
def test_lightning_ddp_re_executed_ranks_share_the_locked_default_directory(tmp_path):
    """Lightning's `ddp` re-runs the command line for rank 1 (CPU, gloo): one directory, rank 1 not refused."""
    result = subprocess.run(train_command(*QUICK, "+trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
                                          f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={tmp_path / 'c'}"),
                            env=clean_env(), capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output  # a second, re-executed process joined
    assert "in use by another process" not in output
    (run,) = (tmp_path / "logs" / "runs").glob("*/*")
    assert (run / "detection" / "summary.json").is_file()
