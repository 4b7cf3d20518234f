"""``python -m deft_lightning.aggregate SWEEP_DIR``: finished runs → paper-shaped tables and a plot.

Reads every run directory under SWEEP_DIR (a Hydra multirun directory, a folder of runs, or one run)
and writes to ``SWEEP_DIR/results/`` (or ``--out``):

- ``results.md``: detection precision / recall / F1 (Table 1) and test accuracy best / last
  (Tables 2–3, backbones), rows = method, columns = noise setting, one table per dataset;
- ``detection.csv``, ``accuracy.csv``: the same numbers in wide numeric form; ``runs.csv``: one row per run;
- ``noise_curves.png``: test accuracy and detection F1 against the noise ratio.

"best" accuracy is the maximum over epochs of the test accuracy, i.e. selected on the test set as in
the paper; "last" is the final epoch's. Runs that differ only by seed are averaged (± std).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deft_lightning.errors import ArtifactError, UserError
from deft_lightning.io import write_csv, write_text
from deft_lightning.reporting.plots import noise_curves
from deft_lightning.reporting.runs import collect_runs
from deft_lightning.reporting.tables import accuracy_tables, detection_tables, noise_series, runs_table


def aggregate(sweep_dir: str | Path, out_dir: str | Path | None = None, with_online: bool = False,
              paper: bool = False) -> dict[str, Path]:
    """Write the tables and the plot; return the written files by kind."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ArtifactError(f"{sweep_dir} is not a directory (expected a multirun or run directory)")
    out = Path(out_dir) if out_dir else sweep_dir / "results"
    damaged: list[tuple[Path, str]] = []
    runs, unfinished = collect_runs(sweep_dir, damaged)
    runs = [run for run in runs if out not in run.run_dir.parents]
    for run_dir, reason in damaged:
        print(f"warning: skipping damaged run {run_dir}: {reason}", file=sys.stderr)
    if damaged:
        print(f"warning: {len(damaged)} damaged run(s) skipped", file=sys.stderr)
    if not runs:
        raise ArtifactError(
            f"no finished run under {sweep_dir}: a run directory holds config.yaml and "
            "detection/summary.json or adaptation/metrics.json"
            + (f" ({len(damaged)} damaged run(s) skipped)" if damaged else "")
        )
    detection = detection_tables(runs, with_online=with_online, paper=paper)
    accuracy = accuracy_tables(runs, paper=paper)

    sections = [f"# Results: {sweep_dir}", "",
                f"{len(runs)} finished run(s)" + (f"; {len(unfinished)} without results yet" if unfinished else "")
                + (f"; {len(damaged)} damaged run(s) skipped" if damaged else "") + ".",
                "Values in %; mean ± std over runs that differ only by seed. "
                "\"best\" = max over epochs of test accuracy (selected on the test set, as in the paper).", ""]
    if detection:
        sections += ["## Clean-sample selection (Table 1): precision / recall / F1", ""]
        sections += [table.markdown() for table in detection]
    if accuracy:
        sections += ["## Test accuracy (Tables 2–3): best / last", ""]
        sections += [table.markdown() for table in accuracy]
    if unfinished:
        sections += ["## Runs without results", ""] + [f"- {path}" for path in unfinished] + [""]
    if damaged:
        sections += ["## Damaged runs (skipped)", ""] + [f"- {path}: {reason}" for path, reason in damaged] + [""]
    files = {"markdown": out / "results.md", "runs": out / "runs.csv", "plot": out / "noise_curves.png"}
    write_text(files["markdown"], "\n".join(sections))
    write_csv(files["runs"], *runs_table(runs))
    for name, tables in (("detection", detection), ("accuracy", accuracy)):
        if tables:
            header, body = tables[0].csv_rows()
            for table in tables[1:]:
                more_header, more_body = table.csv_rows()
                header, body = _merge_wide(header, body, more_header, more_body)
            files[name] = out / f"{name}.csv"
            write_csv(files[name], header, body)
    noise_curves(noise_series(runs), files["plot"], title=str(sweep_dir.name))
    return files


def _merge_wide(header: list[str], body: list[list], more_header: list[str], more_body: list[list]):
    """Stack two wide tables, taking the union of their columns (datasets may have different settings)."""
    columns = header + [c for c in more_header if c not in header]
    rows = [dict(zip(header, row)) for row in body] + [dict(zip(more_header, row)) for row in more_body]
    return columns, [[row.get(c, "") for c in columns] for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deft_lightning.aggregate", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", help="a multirun directory (or any folder of run directories)")
    parser.add_argument("--out", default=None, help="output folder (default: SWEEP_DIR/results)")
    parser.add_argument("--online", action="store_true", help="add rows for the last-epoch online masks (reference)")
    parser.add_argument("--paper", action="store_true", help="add the paper's numbers as '(paper)' rows where settings match")
    args = parser.parse_args(argv)
    try:
        files = aggregate(args.sweep_dir, args.out, with_online=args.online, paper=args.paper)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(files["markdown"].read_text())
    for kind, path in files.items():
        print(f"{kind:>9}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
