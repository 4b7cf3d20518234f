"""The phase-1 detector registry: ``detector.kind`` names an entry, the entry says everything else.

In the style of timm's ``register_model``: a detector is one LightningModule class decorated with
``@register_detector(kind)``. The class describes itself with attributes the pipeline, the report and
the result tables read, so adding a detector touches no project list:

- ``trains`` (bool): phase 1 fits it before the inference pass (``False``: inference only);
- ``table_label`` and ``p_clean_meaning``: its row label in result tables and what its ``p_clean`` means;
- ``selection_rules`` (optional): variants chosen by one key of the detector config (``rule_key``), each a
  :class:`SelectionRule` with its own name, label and meaning (small-loss ``rank`` vs ``gmm``);
- ``artefact_options`` (optional): the plain detector options a saved artefact records, with their types.

How it is built is config, not registry: its config node's ``builder`` is a ``_target_`` node
(``_partial_: true``) naming a function ``(cfg, class_names, noise) -> (module, InputConfig)``, which
the pipeline instantiates like every other component. This module and the module classes import no Hydra.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from deft_lightning.errors import ConfigError

# The project's own detectors: imported on the first lookup, so a lookup never depends on import order.
BUILTIN_MODULES = ("deft_lightning.modules.detector", "deft_lightning.modules.label_match",
                   "deft_lightning.modules.small_loss")


@dataclass(frozen=True)
class SelectionRule:
    """How one detector variant decides: ``name`` is what summaries record (``small_loss_gmm``)."""

    name: str
    label: str
    p_clean: str


@dataclass(frozen=True)
class DetectorEntry:
    """One registered detector; ``rules`` maps a value of ``detector.<rule_key>`` to its rule."""

    kind: str
    module_class: type
    trains: bool
    default_rule: SelectionRule
    rules: Mapping[str, SelectionRule] = field(default_factory=dict)
    rule_key: str | None = None
    artefact_options: Mapping[str, Any] = field(default_factory=dict)

    def rule(self, detector_cfg: Mapping | None = None) -> SelectionRule:
        """The rule this detector config selects (the default one without a ``rule_key``)."""
        if self.rule_key is None or detector_cfg is None:
            return self.default_rule
        value = detector_cfg.get(self.rule_key)
        return self.rules.get(str(value), self.default_rule) if value is not None else self.default_rule

    def all_rules(self) -> list[SelectionRule]:
        return [self.default_rule] + [r for r in self.rules.values() if r.name != self.default_rule.name]


_REGISTRY: dict[str, DetectorEntry] = {}


def register_detector(kind: str) -> Callable[[type], type]:
    """Class decorator: register ``cls`` as ``detector.kind=<kind>`` (built by its config's ``builder``).

    The class must set ``trains``, ``table_label`` and ``p_clean_meaning``; registering the same kind
    twice with another class is refused (a silent replacement would change what old configs mean).
    """

    def decorate(cls: type) -> type:
        missing = [name for name in ("trains", "table_label", "p_clean_meaning") if not hasattr(cls, name)]
        if missing:
            raise TypeError(f"detector {kind!r} ({cls.__name__}) must define the class attributes {missing}")
        previous = _REGISTRY.get(kind)
        if previous is not None and previous.module_class.__qualname__ != cls.__qualname__:
            raise ValueError(f"detector kind {kind!r} is already registered by {previous.module_class.__name__}")
        rules = dict(getattr(cls, "selection_rules", None) or {})
        _REGISTRY[kind] = DetectorEntry(
            kind=kind,
            module_class=cls,
            trains=bool(cls.trains),
            default_rule=SelectionRule(kind, str(cls.table_label), str(cls.p_clean_meaning)),
            rules=rules,
            rule_key=getattr(cls, "rule_key", None),
            artefact_options=dict(getattr(cls, "artefact_options", None) or {}),
        )
        return cls

    return decorate


def _load_builtins() -> None:
    for name in BUILTIN_MODULES:
        importlib.import_module(name)


def registered_detectors() -> list[str]:
    """The registered kinds, sorted (the project's own and any a user registered)."""
    _load_builtins()
    return sorted(_REGISTRY)


def detector_entry(kind: str) -> DetectorEntry:
    """The entry of ``detector.kind``; an unknown kind is a ConfigError listing the registered ones."""
    _load_builtins()
    entry = _REGISTRY.get(str(kind))
    if entry is None:
        raise ConfigError(
            f"detector.kind={kind!r} is not a registered detector; registered: {sorted(_REGISTRY)}. "
            "A new detector is a LightningModule decorated with @register_detector (deft_lightning.modules.registry) "
            "and imported before the run, plus its config node in the detector group."
        )
    return entry


def find_rule(name: str) -> SelectionRule | None:
    """The rule recorded under ``name`` (a kind or a variant such as ``small_loss_gmm``), if registered."""
    _load_builtins()
    for entry in _REGISTRY.values():
        for rule in entry.all_rules():
            if rule.name == name:
                return rule
    return None
