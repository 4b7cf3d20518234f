"""``python -m deft_lightning.aggregate``: run directories → paper-shaped tables and a plot (no training)."""

import csv
import json
import subprocess
import sys

import pytest
import yaml

from deft_lightning.aggregate import aggregate
from deft_lightning.reporting.runs import collect_runs, setting_key
from deft_lightning.reporting.tables import accuracy_tables, detection_tables


def fake_run(root, name, *, dataset="cifar100", mode="sym", ratio=0.2, seed=0, method="deft", backbone="clip_vit_b16",
             detection=(0.99, 0.97, 0.98), online=None, accuracy=(0.89, 0.88), test_sets=("test",)):
    run = root / name
    (run / "detection").mkdir(parents=True)
    (run / "adaptation").mkdir()
    config = {"seed": seed, "dataset": {"name": dataset}, "noise": {"mode": mode, "ratio": ratio},
              "method": {"name": method}, "backbone": {"name": backbone}, "detector": {"name": "deft", "kind": "deft"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    if detection is not None:
        precision, recall, f1 = detection
        summary = {"detector": "deft", "inference": {"precision": precision, "recall": recall, "f1": f1,
                                                     "clean_fraction": 0.8}}
        if online:
            summary["online_last_epoch"] = {"precision": online[0], "recall": online[1], "f1": online[2]}
        (run / "detection" / "summary.json").write_text(json.dumps(summary))
    if accuracy is not None:
        metrics = {"method": method, "backbone": backbone}
        metrics.update({name: {"best": accuracy[0], "last": accuracy[1]} for name in test_sets})
        (run / "adaptation" / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_settings_sort_by_mode_then_ratio():
    labels = [setting_key(m, r)[2] for m, r in sorted([("idn", 0.2), ("sym", 0.6), ("real", None), ("sym", 0.2)],
                                                        key=lambda mr: setting_key(*mr)[:2])]
    assert labels == ["sym 0.2", "sym 0.6", "idn 0.2", "real"]


def test_tables_have_methods_as_rows_and_noise_settings_as_columns(tmp_path):
    fake_run(tmp_path, "0_noise.ratio=0.2", ratio=0.2, detection=(0.99, 0.97, 0.98), accuracy=(0.89, 0.88))
    fake_run(tmp_path, "1_noise.ratio=0.4", ratio=0.4, detection=(0.98, 0.96, 0.97), accuracy=(0.87, 0.86))
    fake_run(tmp_path, "2_noise.ratio=0.4,seed=1", ratio=0.4, seed=1, detection=(0.96, 0.94, 0.95), accuracy=(0.85, 0.84))
    fake_run(tmp_path, "3_method=ce", ratio=0.4, method="ce", detection=None, accuracy=(0.70, 0.60))
    (tmp_path / "4_unfinished").mkdir()
    (tmp_path / "4_unfinished" / "config.yaml").write_text("seed: 0\n")

    runs, unfinished = collect_runs(tmp_path)
    assert len(runs) == 4 and [p.name for p in unfinished] == ["4_unfinished"]

    (detection,) = detection_tables(runs)
    assert detection.dataset == "cifar100" and detection.rows == ["DEFT"] and detection.columns == ["sym 0.2", "sym 0.4"]
    assert detection.cell_text("DEFT", "sym 0.2") == "99.00 / 97.00 / 98.00"
    assert detection.cell_text("DEFT", "sym 0.4") == "97.00±1.41 / 95.00±1.41 / 96.00±1.41"  # two seeds

    (accuracy,) = accuracy_tables(runs)
    assert accuracy.rows == ["DEFT", "CE"] and accuracy.columns == ["sym 0.2", "sym 0.4"]
    assert accuracy.cell_text("CE", "sym 0.4") == "70.00 / 60.00"
    assert accuracy.cell_text("CE", "sym 0.2") == "–"


def test_paper_rows_and_backbones_and_several_test_sets(tmp_path):
    fake_run(tmp_path, "a", dataset="clothing1m", mode="real", ratio=0.0, backbone="resnet50", detection=None)
    fake_run(tmp_path, "b", dataset="clothing1m", mode="real", ratio=0.0, backbone="convnext_t", method="ce", detection=None)
    fake_run(tmp_path, "c", dataset="webvision", mode="real", ratio=0.0, detection=None, test_sets=("webvision", "imagenet"))
    runs, _ = collect_runs(tmp_path)
    tables = {t.dataset: t for t in accuracy_tables(runs, paper=True)}
    clothing = tables["clothing1m"]
    assert clothing.columns == ["real"]
    assert {"DEFT (resnet50)", "CE (convnext_t)", "DEFT (resnet50) (paper)"} <= set(clothing.rows)
    assert clothing.cell_text("DEFT (resnet50) (paper)", "real") == "70.82 / –"
    assert {"DEFT (clip_vit_b16) · webvision", "DEFT (clip_vit_b16) · imagenet"} <= set(tables["webvision"].rows)


def test_aggregate_writes_markdown_csv_and_png(tmp_path):
    sweep = tmp_path / "sweep"
    for i, ratio in enumerate((0.2, 0.4, 0.6)):
        fake_run(sweep, f"{i}_noise.ratio={ratio}", ratio=ratio, detection=(0.99 - ratio / 10, 0.97, 0.98 - ratio / 10),
                 online=(0.9, 0.9, 0.9), accuracy=(0.9 - ratio / 5, 0.89 - ratio / 5))
    files = aggregate(sweep, with_online=True, paper=True)
    markdown = files["markdown"].read_text()
    assert "| method (P / R / F1, %) | sym 0.2 | sym 0.4 | sym 0.6 |" in markdown
    assert "| DEFT (paper) | 99.51 / 97.77 / – | 98.75 / 97.91 / – | 97.04 / 97.27 / – |" in markdown
    assert "DEFT (last-epoch online mask)" in markdown
    with open(files["accuracy"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    ours = next(r for r in rows if r["method"] == "DEFT")
    assert float(ours["sym 0.4 best"]) == pytest.approx(82.0) and ours["sym 0.4 n"] == "1"
    with open(files["runs"], newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_reports_an_empty_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "deft_lightning.aggregate", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "no finished run" in result.stderr


def test_damaged_runs_are_skipped_with_a_warning_and_a_count_never_filed_under_a_guess(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    fake_run(sweep, "0_good", ratio=0.2, accuracy=(0.89, 0.88))
    truncated = fake_run(sweep, "1_truncated", ratio=0.4)
    summary = truncated / "detection" / "summary.json"
    summary.write_text(summary.read_text()[:20])  # cut mid-write
    bad_metrics = fake_run(sweep, "2_bad_metrics", ratio=0.4, detection=None)
    (bad_metrics / "adaptation" / "metrics.json").write_text("[1, 2]")
    no_setting = fake_run(sweep, "3_no_setting", ratio=0.6)
    (no_setting / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "dataset": {"name": "cifar100"}}))
    broken_yaml = fake_run(sweep, "4_broken_yaml", ratio=0.6)
    (broken_yaml / "config.yaml").write_text("noise: {mode: sym, ratio: [0.6\n")

    damaged = []
    runs, _ = collect_runs(sweep, damaged)
    assert [r.run_dir.name for r in runs] == ["0_good"]
    assert sorted(p.name for p, _ in damaged) == ["1_truncated", "2_bad_metrics", "3_no_setting", "4_broken_yaml"]
    reasons = dict((p.name, reason) for p, reason in damaged)
    assert "summary.json is not readable JSON" in reasons["1_truncated"]
    assert "noise.mode" in reasons["3_no_setting"]

    files = aggregate(sweep)
    err = capsys.readouterr().err
    assert "4 damaged run(s) skipped" in err and "1_truncated" in err
    markdown = files["markdown"].read_text()
    assert "1 finished run(s); 4 damaged run(s) skipped." in markdown
    assert "sym 0.4" not in markdown and "sym 0.6" not in markdown  # nothing filed under an unreadable setting
    with pytest.warns(UserWarning, match="skipping damaged run"):
        collect_runs(sweep)


def test_command_line_with_only_damaged_runs_says_so(tmp_path):
    run = fake_run(tmp_path, "0_bad", ratio=0.2, accuracy=None)
    (run / "detection" / "summary.json").write_text("")
    result = subprocess.run([sys.executable, "-m", "deft_lightning.aggregate", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "1 damaged run(s) skipped" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_without_a_best_accuracy_is_left_out_of_the_plot_lines_not_a_crash(tmp_path):
    from deft_lightning.reporting.tables import noise_series

    fake_run(tmp_path, "a", ratio=0.2, seed=0, accuracy=(0.80, 0.79))
    fake_run(tmp_path, "b", ratio=0.2, seed=1, accuracy=(None, 0.70))  # e.g. stopped before its first evaluation
    runs, _ = collect_runs(tmp_path)
    (line,) = [s for s in noise_series(runs) if s["label"].endswith("· DEFT")]
    assert line["ratio"] == [0.2] and line["accuracy"] == [pytest.approx(80.0)]


def test_a_run_without_a_detection_f1_is_left_out_of_the_plot_lines_not_a_crash(tmp_path):
    from deft_lightning.reporting.tables import noise_series

    fake_run(tmp_path, "a", ratio=0.2, seed=0, detection=(0.9, 0.8, 0.85))
    fake_run(tmp_path, "b", ratio=0.2, seed=1, detection=(0.9, 0.8, None))
    runs, _ = collect_runs(tmp_path)
    (line,) = [s for s in noise_series(runs) if s["label"].endswith("· DEFT") and any(v is not None for v in s["f1"])]
    assert line["f1"] == [pytest.approx(85.0)]


def test_table_cells_skip_missing_values_count_seeds_and_are_replaced_when_filed_again():
    from deft_lightning.reporting.runs import setting_key
    from deft_lightning.reporting.tables import Table

    table = Table("t", "d", ("best", "last"))
    table.add("A", setting_key("sym", 0.4), {"best": [80.0, 82.0, float("nan")], "last": [70.0]})
    table.add("A", setting_key("sym", 0.2), {"best": [1.0], "last": [2.0]})
    table.add("A", setting_key("sym", 0.2), {"best": [90.0], "last": []})  # filed again: replaces the cell
    table.add("B", setting_key("sym", 0.2), {"best": [], "last": [float("nan")]})  # a cell with nothing measured
    assert table.columns == ["sym 0.2", "sym 0.4"] and table.rows == ["A", "B"]
    assert table.cell_text("A", "sym 0.4") == "81.00±1.41 / 70.00"
    assert table.cell_text("A", "sym 0.2") == "90.00 / –"
    assert table.cell_text("B", "sym 0.2") == "– / –" and table.cell_text("B", "sym 0.4") == "–"
    header, body = table.csv_rows()
    assert header == ["dataset", "method", "sym 0.2 best", "sym 0.2 last", "sym 0.4 best", "sym 0.4 last",
                      "sym 0.2 n", "sym 0.4 n"]
    assert body == [["d", "A", 90.0, "", 81.0, 70.0, 1, 2], ["d", "B", "", "", "", "", "", ""]]
    assert all(type(v) in (str, float, int) for row in body for v in row)  # plain Python values for the csv writer
