"""``python -m deft_lightning.experiments.toy_table``: replicates per cell, resumable, world properties first,
cells in parallel processes, a failed cell reported without stopping the others.

A tiny draw of toy world v1 and the zero-shot detector only, so it runs in seconds; the full table is
`make toy-table` (not part of the suite)."""

import json
import subprocess
import sys

import pandas as pd
import yaml

from cli_runs import clean_env

SMALL = ["dataset.reader.num_train=120", "dataset.reader.num_test=60"]


def _table(out, *args):
    command = [sys.executable, "-m", "deft_lightning.experiments.toy_table", "--experiment", "toy", "--out", str(out),
               "--settings", "sym:0.4", "--cells", "label_match", *args, *SMALL]
    return subprocess.run(command, env=clean_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)


def test_each_replicate_draws_its_own_noise_and_a_rerun_skips_what_is_done(tmp_path):
    out = tmp_path / "table"
    first = _table(out, "--seeds", "2", "--jobs", "2", "--threads", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 runs, 2 at a time with 1 torch thread(s) each" in first.stdout
    properties = json.loads((out / "properties.json").read_text())
    assert {"zero_shot_pct", "linear_probe_pct", "clean_finetune_pct"} <= set(properties)
    assert "zero_shot_pct" in first.stdout and "target 55-70" in first.stdout
    for replicate in (0, 1):
        run = out / "sym_0.4" / f"seed{replicate}" / "label_match"
        assert (run / "detection" / "summary.json").is_file()
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert (cfg["seed"], cfg["noise"]["seed"]) == (replicate, 1 + replicate)
    given = [pd.read_csv(out / "sym_0.4" / f"seed{k}" / "label_match" / "detection" / "selection.csv")
             for k in (0, 1)]
    assert (given[0]["true_label"] == given[1]["true_label"]).all()  # the same images ...
    assert (given[0]["given_label"] != given[1]["given_label"]).any()  # ... under two noise draws
    row = next(line for line in (out / "results" / "results.md").read_text().splitlines()
               if line.startswith("| Label-match |"))
    assert "±" in row  # two replicates averaged in one cell
    assert "INFO:" not in first.stderr  # the runs' epoch lines stay out of the table's output

    mtime = (out / "properties.json").stat().st_mtime_ns
    again = _table(out, "--seeds", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done earlier") == 2 and (out / "properties.json").stat().st_mtime_ns == mtime


def test_cells_in_parallel_processes_give_the_files_of_one_process(tmp_path):
    parallel, serial = tmp_path / "parallel", tmp_path / "serial"
    # DEFT trains (both phases, shortened): its files depend on every random draw of the run
    short = ["detector.epochs=2", "backbone.epochs=1"]
    for out, jobs in ((parallel, "2"), (serial, "1")):
        done = subprocess.run(
            [sys.executable, "-m", "deft_lightning.experiments.toy_table", "--experiment", "toy", "--out", str(out),
             "--settings", "sym:0.4", "--cells", "label_match", "deft", "--seeds", "2", "--jobs", jobs, "--threads", "1",
             *short, *SMALL],
            env=clean_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "detection epoch" not in done.stdout + done.stderr  # the runs' epoch lines stay out, in workers too
    for replicate in (0, 1):
        for name in ("label_match/detection/selection.csv", "deft/detection/selection.csv", "deft/adaptation/metrics.json"):
            path = f"sym_0.4/seed{replicate}/{name}"
            assert (parallel / path).read_bytes() == (serial / path).read_bytes(), path


def test_a_failed_cell_is_named_the_others_run_and_the_table_exits_1(tmp_path):
    out = tmp_path / "table"
    broken = out / "sym_0.4" / "seed1" / "label_match"
    broken.parent.mkdir(parents=True)
    broken.write_text("not a directory\n")  # where this cell's run directory should be
    done = _table(out, "--seeds", "3", "--jobs", "2", "--threads", "1")
    assert done.returncode == 1
    assert "seed 1 label_match: FAILED" in done.stdout and str(broken) in done.stdout
    assert "1 run(s) failed" in done.stderr and str(broken) in done.stderr
    for replicate in (0, 2):
        assert (out / "sym_0.4" / f"seed{replicate}" / "label_match" / "detection" / "summary.json").is_file()
    assert (out / "results" / "results.md").is_file()
    assert broken.read_text() == "not a directory\n"  # left as it was
