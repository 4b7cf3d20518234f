"""Check a dataset before a long job: ``python -m deft_lightning.inspect_data dataset=NAME dataset.root=PATH``.

Reads the files exactly as training would, applies the configured noise, and prints a short summary
(or, with ``--json`` / ``inspect.out=PATH``, the same facts as JSON). Bad input ends with one clear
message on stderr and exit status 2, no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from deft_lightning.data.image_io import find_bad_images
from deft_lightning.data.noise import apply_noise
from deft_lightning.errors import UserError
from deft_lightning.io import write_json

USAGE = """usage: python -m deft_lightning.inspect_data dataset=NAME dataset.root=PATH [noise=MODE noise.ratio=R]
                                             [--json] [inspect.out=FILE]
                                             [--verify-images [inspect.unreadable_out=FILE] [inspect.workers=N]]

--verify-images decodes every image of every split in a process pool (one worker per core) and writes
the unreadable ones (truncated, empty, not an image) as JSON to inspect.unreadable_out."""


def verify_images(files, workers: int | None = None, progress: bool = True) -> dict:
    """Decode every image of every split.

    Returns ``{checked, unreadable: [{split, index, sample_id, path, reason}, ...]}``.
    """
    checked, unreadable = 0, []
    for split_name, split in [("train", files.train), *files.test.items()]:
        if split.paths is None:  # in-memory arrays (CIFAR): nothing to decode
            continue
        checked += len(split)
        for i, reason in find_bad_images(split.paths, decode=True, workers=workers, progress=progress, desc=split_name):
            unreadable.append(
                {
                    "split": split_name,
                    "index": i,
                    "sample_id": split.sample_ids[i],
                    "path": split.paths[i],
                    "reason": reason,
                }
            )
    return {"checked": checked, "unreadable": unreadable}


def inspect(cfg: DictConfig, progress: bool = False) -> dict:
    """Read the dataset and apply the noise as training would; return the JSON-able facts."""
    root = cfg.dataset.root
    files = instantiate(cfg.dataset.reader)(root=None if root is None else str(Path(str(root)).expanduser()))
    options = cfg.get("inspect", {})
    verified = None
    if bool(options.get("verify_images", False)):
        workers = options.get("workers")
        verified = verify_images(files, workers=None if workers is None else int(workers), progress=True)
        out = Path(str(options.get("unreadable_out") or "unreadable_images.json")).expanduser()
        write_json(out, {"dataset": files.name, "root": None if root is None else str(root), **verified})
        verified = {"checked": verified["checked"], "unreadable": len(verified["unreadable"]),
                    "first_unreadable": verified["unreadable"][:5], "file": str(out)}
    use_cache = bool(options.get("use_cache", True))
    noisy = apply_noise(
        files.train,
        files.num_classes,
        mode=str(cfg.noise.mode),
        ratio=cfg.noise.ratio,  # validated (with a clear message) by apply_noise
        seed=cfg.noise.seed,
        dataset_key=f"{cfg.dataset.name}-{len(files.train)}",  # the DataModule's key, so the cache is shared
        cache_dir=cfg.paths.cache_dir if use_cache else None,
        label_file=cfg.noise.get("label_file"),
        progress=progress,
    )
    first = int(cfg.get("inspect", {}).get("first_items", 5))
    warnings = []
    expected = cfg.dataset.get("num_classes")
    if expected is not None and int(expected) != files.num_classes:
        warnings.append(
            f"dataset.num_classes is {expected} but the files define {files.num_classes} classes; "
            "training uses the files' count."
        )
    return {
        "dataset": files.name,
        "root": None if root is None else str(root),
        "family": files.family,
        "num_classes": files.num_classes,
        "class_names": list(files.class_names),
        "num_train": len(files.train),
        "num_test": {name: len(split) for name, split in files.test.items()},
        "train_label_counts": np.bincount(noisy.given, minlength=files.num_classes).tolist(),
        "noise_mode": noisy.mode,
        "noise_ratio": noisy.ratio,
        "noise_seed": noisy.seed,
        "realised_noise_rate": noisy.realised_rate,
        "first_train_items": [
            {
                "index": i,
                "sample_id": files.train.sample_ids[i],
                "given_label": int(noisy.given[i]),
                "true_label": None if noisy.true is None else int(noisy.true[i]),
            }
            for i in range(min(first, len(files.train)))
        ],
        "warnings": warnings,
        **({} if verified is None else {"verify_images": verified}),
    }


def summary_text(report: dict) -> str:
    """A few lines for a human; the JSON carries the details."""
    counts = report["train_label_counts"]
    names = report["class_names"]
    rate = report["realised_noise_rate"]
    lines = [
        f"dataset    {report['dataset']} ({report['num_classes']} classes, family {report['family']})",
        f"classes    {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}",
        f"train      {report['num_train']} samples; given labels per class min {min(counts)} / max {max(counts)}",
        "test       " + (", ".join(f"{k}: {v}" for k, v in report["num_test"].items()) or "none"),
        f"noise      {report['noise_mode']} ratio {report['noise_ratio']:g} seed {report['noise_seed']}; realised rate "
        + ("unknown (no true labels)" if rate is None else f"{100 * rate:.1f} %"),
        "first items (index, id, given, true):",
    ]
    for item in report["first_train_items"]:
        lines.append(f"  {item['index']:>4}  {item['sample_id']}  {item['given_label']}  {item['true_label']}")
    lines += [f"warning: {w}" for w in report["warnings"]]
    verified = report.get("verify_images")
    if verified is not None:
        lines.append(
            f"images     {verified['checked']} decoded, {verified['unreadable']} unreadable; list in {verified['file']}"
        )
        lines += [f"  {item['path']}: {item['reason']}" for item in verified["first_unreadable"]]
    return "\n".join(lines)


def compose_config(overrides: list[str]) -> DictConfig:
    """The ``inspect_data`` root config with command-line overrides (Hydra's compose API, no run dir)."""
    GlobalHydra.instance().clear()  # a composed config elsewhere in this process must not block this one
    with initialize_config_module(config_module="deft_lightning.conf", version_base="1.3"):
        return compose(config_name="inspect_data", overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    as_json = "--json" in args
    overrides = [a for a in args if a not in ("--json", "--verify-images")]
    if "--verify-images" in args:
        overrides.append("inspect.verify_images=true")
    try:
        cfg = compose_config(overrides)
        report = inspect(cfg, progress=not as_json)
        as_json = as_json or bool(cfg.inspect.json)
        if cfg.inspect.out:
            write_json(cfg.inspect.out, report)
    except UserError as err:  # DatasetError, ConfigError, ...: one paragraph, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as err:
        print(f"error: invalid overrides {overrides}: {err}\n{USAGE}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(summary_text(report))
        if cfg.inspect.out:
            print(f"report     {cfg.inspect.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
