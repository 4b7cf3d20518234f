"""The detector artefact (``detection/detector_weights.pt``) as data, never as code.

An artefact may come from someone else, so nothing in it is ever passed to Hydra's ``instantiate`` or
resolved as an OmegaConf interpolation. It holds tensors and plain values only:

- ``format`` / ``format_version``; ``kind`` (a registered detector that trains: ``deft``, ``small_loss``)
  and ``detector_name``;
- ``class_names``: the classes it was trained on;
- ``clip``: the CLIP ``model_name``, open_clip ``pretrained`` tag and local ``weights`` path it used,
  and for a CLIP with random weights (no tag, no file) the ``init_seed`` it was drawn with;
- ``inputs`` (optional): the transform ``family`` and stored ``native_size`` of the training images,
  so that new images are scored with the inference pass's test-time transform;
- ``peft``: the *name* of one of the project's own PEFT choices (``conf/peft/<name>.yaml``) and its
  numeric/string options;
- ``detector``: the prompt and rule options that shape the detector (numbers, strings, booleans), as
  the detector class's ``artefact_options`` lists them;
- ``optimizer``: what it was trained with (a record only: nothing is trained on reload);
- ``state_dict`` (tensors) and ``extra`` (the small-loss estimated forget rate).

It is read with ``torch.load(weights_only=True)`` (no pickled code), then checked *before anything is
built*: any key starting with ``_`` (``_target_``, ``_partial_``, ...), any ``${...}`` interpolation,
any key the project does not know and any value that is not plain is refused with an
:class:`ArtifactError` naming the file and the key. The detector is then rebuilt only from the
project's own config nodes (``conf/detector/<kind>.yaml``, ``conf/peft/<name>.yaml``) with the checked
values applied to keys those nodes already have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from deft_lightning.errors import ArtifactError

FORMAT = "deft_lightning.detector"
FORMAT_VERSION = 2
# Keys of the current detector config that win over a reloaded artefact's: they describe this run and
# this dataset (batch size, selection rule options, where the frozen CLIP file is), not the detector.
RUNTIME_KEYS = ("batch_size", "real_noise_variant", "forget_rate", "weights")

NUMBER = (int, float)
TEXT_OR_NONE = (str, type(None))
CLIP_OPTIONS = {"model_name": str, "pretrained": TEXT_OR_NONE, "weights": TEXT_OR_NONE, "init_seed": (int, type(None))}
INPUT_OPTIONS = {"family": str, "native_size": (int, type(None))}
EXTRA_OPTIONS = {"estimated_forget_rate": NUMBER}
TOP_LEVEL = ("format", "format_version", "kind", "detector_name", "class_names", "clip", "peft", "detector",
             "optimizer", "state_dict", "extra", "inputs")
PLAIN = (bool, int, float, str, type(None))


def detector_options(kind: str) -> dict[str, Any]:
    """The detector options an artefact of ``kind`` records, with their types: the registered detector's
    ``artefact_options`` (e.g. ``DetectorModule.artefact_options``)."""
    from deft_lightning.modules.registry import detector_entry

    return dict(detector_entry(kind).artefact_options)


def savable_kinds() -> list[str]:
    """Kinds whose artefacts can be saved and reloaded: registered detectors that train."""
    from deft_lightning.modules.registry import detector_entry, registered_detectors

    return [kind for kind in registered_detectors() if detector_entry(kind).trains]


def conf_dir() -> Path:
    import deft_lightning.conf as conf

    return Path(conf.__file__).resolve().parent


def project_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def project_node(group: str, name: str) -> DictConfig:
    """The project's own ``conf/<group>/<name>.yaml`` (a name that is not one of its files is refused)."""
    if name not in project_choices(group):
        raise ArtifactError(f"{group} {name!r} is not one of the project's {group} choices {project_choices(group)}")
    node = OmegaConf.load(conf_dir() / group / f"{name}.yaml")
    if "defaults" in node:  # its schema and shared blocks: composed by Hydra from the project's own files only
        return _composed_node(group, name)
    return node


def _composed_node(group: str, name: str) -> DictConfig:
    """``conf/<group>/<name>.yaml`` with its defaults list applied, composed from the package's config
    module in a Hydra context of its own; the caller's (a running ``@hydra.main``) is restored after.
    Interpolations are left unresolved and the schema's typing is dropped, as for a file without defaults."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="deft_lightning.conf", version_base="1.3"):
            composed = compose(config_name=f"{group}/{name}")
    finally:
        restore_gh_from_backup(backup)
    node = composed[group] if group in composed else composed  # a group's file composes into its package
    # as plain a node as a file without defaults: the artefact's checked values (clip.init_seed) go on top
    return OmegaConf.create(OmegaConf.to_container(node, resolve=False))


# ----- writing ------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("_")}
    return value if isinstance(value, PLAIN) else str(value)


def _pick(source: dict, schema: dict) -> dict:
    out = {}
    for key, kind in schema.items():
        if key not in source:
            continue
        out[key] = _pick(source[key] or {}, kind) if isinstance(kind, dict) else _plain(source[key])
    return out


def clip_init_seed(cfg: DictConfig) -> int | None:
    """The seed a CLIP with random weights (no pretrained tag, no file) is drawn with; None otherwise."""
    clip = cfg.detector.clip
    if clip.get("pretrained") or clip.get("weights"):
        return None
    seed = clip.get("init_seed")
    return int(seed if seed is not None else cfg.get("seed", 0))


def artefact_payload(kind: str, cfg: DictConfig, state_dict: dict, class_names: list[str], extra: dict,
                     inputs: dict | None = None) -> dict:
    """The plain-valued artefact of a trained detector (see the module docstring)."""
    detector = OmegaConf.to_container(cfg.detector, resolve=True)
    clip = _pick(detector.get("clip") or {}, CLIP_OPTIONS)
    if detector.get("clip") is not None:  # a detector of one's own may have no CLIP at all
        clip["init_seed"] = clip_init_seed(cfg)
    peft = OmegaConf.to_container(cfg.peft, resolve=True)
    optimizer = dict(detector.get("optimizer") or {})
    target = str(optimizer.get("_target_", ""))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "detector_name": str(detector.get("name", kind)),
        "class_names": [str(c) for c in class_names],
        "clip": clip,
        "peft": {"name": str(peft.get("name", "")),
                 "options": {k: _plain(v) for k, v in (peft.get("module") or {}).items()
                             if not str(k).startswith("_")}},
        "detector": _pick(detector, detector_options(kind)),
        "optimizer": {"name": target.rsplit(".", 1)[-1], **_plain(optimizer)},
        "state_dict": state_dict,
        "extra": {k: float(v) for k, v in (extra or {}).items() if k in EXTRA_OPTIONS},
        "inputs": _pick(inputs or {}, INPUT_OPTIONS),
    }


# ----- reading and checking -----------------------------------------------------------------------
def read_artefact(path: str | Path) -> dict:
    """Load and check an artefact; nothing is built and nothing in it is called."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise ArtifactError(f"detector.weights={path}: no such file (expected a detection/detector_weights.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holding objects weights_only refuses
        raise ArtifactError(
            f"detector.weights={path} cannot be read as a detector artefact ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200] if str(err) else ''}); expected a detection/detector_weights.pt."
        ) from None
    check_artefact(payload, path)
    return payload


def _refuse(path: Path, key: str, why: str) -> None:
    raise ArtifactError(f"detector.weights={path}: key {key!r} {why}; the artefact is refused and nothing was built.")


def _walk(value: Any, where: str, path: Path) -> None:
    """Refuse ``_``-keys (Hydra's ``_target_`` & co.) and ``${...}`` anywhere outside the tensors."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            if not isinstance(key, str):
                _refuse(path, name, "is not a text key")
            if key.startswith("_"):
                _refuse(path, name, "names code to call (Hydra keys such as _target_ are never accepted)")
            if where == "state_dict":
                continue
            _walk(item, name, path)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _walk(item, f"{where}[{i}]", path)
    elif isinstance(value, str):
        if "${" in value:
            _refuse(path, where, f"holds an interpolation {value[:60]!r}")
    elif not isinstance(value, PLAIN):
        _refuse(path, where, f"holds a {type(value).__name__}, expected a plain value")


def _check_schema(values: Any, schema: dict, where: str, path: Path) -> None:
    if not isinstance(values, dict):
        _refuse(path, where, f"must be a mapping, found {type(values).__name__}")
    for key, value in values.items():
        name = f"{where}.{key}"
        if key not in schema:
            _refuse(path, name, f"is not a known option (known: {sorted(schema)})")
        kind = schema[key]
        if isinstance(kind, dict):
            _check_schema(value, kind, name, path)
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            _refuse(path, name, f"holds {value!r}, expected {getattr(kind, '__name__', kind)}")


def _plain_leaf(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, PLAIN) for v in value)
    return isinstance(value, PLAIN)


def check_artefact(payload: Any, path: Path) -> None:
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ArtifactError(
            f"detector.weights={path} is not a detector artefact (detection/detector_weights.pt of a phase-1 run)"
        )
    try:
        _walk(payload, "", path)  # before anything else: no code-bearing keys anywhere
    except ArtifactError as err:
        if payload.get("format") == FORMAT:
            raise
        raise ArtifactError(
            f"{err} It also lacks the {FORMAT!r} format marker: artefacts written before format {FORMAT_VERSION} "
            "stored Hydra configs that name code, and are never loaded; rerun phase 1 to write a plain-valued one."
        ) from None
    if payload.get("format") != FORMAT or payload.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"detector.weights={path} has format {payload.get('format')!r} version {payload.get('format_version')!r}, "
            f"expected {FORMAT!r} version {FORMAT_VERSION} (artefacts of older versions stored code-bearing configs "
            "and are not loaded): rerun phase 1 to write a new one."
        )
    for key in payload:
        if key not in TOP_LEVEL:
            _refuse(path, key, f"is not a known artefact key (known: {list(TOP_LEVEL)})")
    kind = payload.get("kind")
    if not isinstance(kind, str) or kind not in savable_kinds():
        _refuse(path, "kind", f"holds {kind!r}, expected one of {savable_kinds()}")
    if not isinstance(payload.get("detector_name", kind), str):
        _refuse(path, "detector_name", "must be text")
    names = payload.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        _refuse(path, "class_names", "must be a list of class names")
    _check_schema(payload.get("clip") or {}, CLIP_OPTIONS, "clip", path)
    _check_schema(payload.get("detector") or {}, detector_options(kind), "detector", path)
    _check_schema(payload.get("extra") or {}, EXTRA_OPTIONS, "extra", path)
    _check_schema(payload.get("inputs") or {}, INPUT_OPTIONS, "inputs", path)
    peft = payload.get("peft")
    if not isinstance(peft, dict) or set(peft) - {"name", "options"} or not isinstance(peft.get("name"), str):
        _refuse(path, "peft", "must be {name: <one of the project's PEFT choices>, options: {...}}")
    if peft["name"] not in project_choices("peft"):
        _refuse(path, "peft.name",
                f"holds {peft['name']!r}, not one of the project's PEFT choices {project_choices('peft')}")
    known = {k for k in project_node("peft", peft["name"]).module if not str(k).startswith("_")}
    for key, value in (peft.get("options") or {}).items():
        if key not in known:
            _refuse(path, f"peft.options.{key}", f"is not an option of peft={peft['name']} (known: {sorted(known)})")
        if not _plain_leaf(value):
            _refuse(path, f"peft.options.{key}", "must be a number, text, boolean or a list of them")
    optimizer = payload.get("optimizer") or {}
    if not isinstance(optimizer, dict) or not all(_plain_leaf(v) for v in optimizer.values()):
        _refuse(path, "optimizer", "must hold plain values only")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        _refuse(path, "state_dict", "must map parameter names to tensors")


def check_class_names(artefact: dict, class_names: list[str], path) -> None:
    """Class-specific contexts and the small-loss head are one row per class: they need the same classes."""
    saved = list(artefact.get("class_names") or [])
    prompt = (artefact.get("detector") or {}).get("prompt") or {}
    per_class = artefact["kind"] == "small_loss" or bool(prompt.get("class_specific"))
    if not per_class or saved == list(class_names):
        return
    what = "its small-loss head" if artefact["kind"] == "small_loss" else "its class-specific contexts"
    first = next((i for i, (a, b) in enumerate(zip(saved, class_names)) if a != b), min(len(saved), len(class_names)))
    raise ArtifactError(
        f"detector.weights={path} was trained on {len(saved)} classes {_short(saved)}, this dataset has "
        f"{len(class_names)} {_short(list(class_names))} (first difference at class {first}); {what} hold one entry "
        "per class, so they only apply to the same classes in the same order."
    )


def _short(names: list[str], limit: int = 6) -> str:
    return str(names[:limit])[:-1] + (", ...]" if len(names) > limit else "]")


# ----- rebuilding ---------------------------------------------------------------------------------
def _apply(node: DictConfig, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            _apply(node[key], value)
        else:
            node[key] = value


def config_from_artefact(cfg: DictConfig, artefact: dict) -> DictConfig:
    """This run's config with the detector and PEFT rebuilt from the project's own nodes and the artefact's
    checked plain values. Only ``RUNTIME_KEYS`` (and a local CLIP file given now) keep their current values;
    the selection always comes from the inference pass, since nothing is trained."""
    kind = artefact["kind"]
    current = OmegaConf.to_container(cfg.detector, resolve=True)
    detector = project_node("detector", kind)
    peft = project_node("peft", artefact["peft"]["name"])
    with open_dict(detector), open_dict(peft):
        detector.name = str(artefact.get("detector_name") or kind)
        clip = dict(artefact.get("clip") or {})
        if (current.get("clip") or {}).get("weights"):
            clip["weights"] = current["clip"]["weights"]
        _apply(detector.clip, clip)
        _apply(detector, artefact.get("detector") or {})
        for key in RUNTIME_KEYS:
            if key in current:
                detector[key] = current[key]
        detector.weights = current.get("weights")
        detector.selection_source = "inference"
        _apply(peft.module, artefact["peft"].get("options") or {})
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.detector = detector
        cfg.peft = peft
    return cfg
