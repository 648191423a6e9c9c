"""Validation targets and metric directions: everything scoring needs to know about a workload.

Targets come from a frozen targets JSON (the format of AlgoPerf's ``workload_targets_v05.json``)
or, when no file is given, from the project's workload registry
(``workloads.registry.targets_table()``, which returns the same format). Scoring never imports
model code beyond that table.

The JSON format::

    {"base_workloads": [...], "held_out_workloads": [...],
     "workloads": {name: {"target_metric_name": "accuracy", "validation_target_value": 0.77,
                          "step_hint": 1000, "test_target_value": 0.65,        # optional
                          "lower_is_better": false,                            # optional
                          "max_allowed_runtime_sec": 69768,                    # optional
                          "base_workload": "imagenet_vit"}}}                    # optional

``max_allowed_runtime_sec`` is the budget (x1.5 for self-tuning): evals logged past it do not
count. Without it, the budget the harness logged in the trial's metadata is used, if any.

Metric direction: ``algoperf.benchmark_rules.lower_is_better``, the rule the runner uses too;
an entry's ``lower_is_better`` key overrides it.
"""
import dataclasses
import json
import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

from algoperf.benchmark_rules import lower_is_better
from scoring.errors import ScoringInputError, TargetsUnavailableError


@dataclasses.dataclass(frozen=True)
class WorkloadTarget:
    name: str
    metric: str                      # e.g. "accuracy"; the logged column is "validation/<metric>"
    value: float                     # the validation target
    lower_is_better: bool
    step_hint: Optional[int] = None
    test_value: Optional[float] = None
    base_workload: Optional[str] = None  # for a variant: the workload it modifies
    max_allowed_runtime_sec: Optional[float] = None

    @property
    def validation_column(self) -> str:
        return f"validation/{self.metric}"


@dataclasses.dataclass(frozen=True)
class TargetsTable:
    workloads: Mapping[str, WorkloadTarget]
    base_workloads: Tuple[str, ...]
    held_out_workloads: Tuple[str, ...]
    source: str                      # file path, or "workloads.registry" (used in errors)

    def __contains__(self, name: str) -> bool:
        return name in self.workloads

    def __getitem__(self, name: str) -> WorkloadTarget:
        if name not in self.workloads:
            raise ScoringInputError(self.source, f"no target for workload {name!r}; known: "
                                    f"{', '.join(sorted(self.workloads))}")
        return self.workloads[name]

    def base_of(self, variant: str, base_workloads: Optional[Sequence[str]] = None) -> str:
        """The base workload a held-out variant belongs to.

        An explicit ``base_workload`` entry wins; otherwise the longest base name that prefixes
        the variant (``imagenet_resnet_large_bn_init`` -> ``imagenet_resnet``).
        """
        explicit = self[variant].base_workload
        if explicit:
            return explicit
        candidates = [b for b in (base_workloads or self.base_workloads)
                      if variant.startswith(b + "_")]
        if not candidates:
            raise ScoringInputError(self.source, f"held-out workload {variant!r} has no base "
                                    "workload (no base name prefixes it and no 'base_workload')")
        return max(candidates, key=len)


def targets_from_dict(table: Mapping, source: str) -> TargetsTable:
    """Validates a targets dict (the JSON format above) and turns it into a ``TargetsTable``."""
    if not isinstance(table, Mapping) or not isinstance(table.get("workloads"), Mapping):
        raise ScoringInputError(source, "targets must be a JSON object with a 'workloads' object")
    workloads: Dict[str, WorkloadTarget] = {}
    for name, entry in table["workloads"].items():
        workloads[name] = _workload_target(name, entry, source)
    base = tuple(table.get("base_workloads", ()))
    held_out = tuple(table.get("held_out_workloads", ()))
    for name in base + held_out:
        if name not in workloads:
            raise ScoringInputError(source, f"workload {name!r} is listed as base or held-out "
                                    "but has no entry under 'workloads'")
    return TargetsTable(workloads, base, held_out, source)


def _workload_target(name: str, entry, source: str) -> WorkloadTarget:
    try:
        metric = str(entry["target_metric_name"])
        value = float(entry["validation_target_value"])
    except (KeyError, TypeError, ValueError):
        raise ScoringInputError(source, f"workload {name!r} needs 'target_metric_name' and a "
                                "numeric 'validation_target_value'") from None
    direction = entry.get("lower_is_better")
    test_value = entry.get("test_target_value")
    step_hint = entry.get("step_hint")
    runtime = entry.get("max_allowed_runtime_sec")
    return WorkloadTarget(
        name=name, metric=metric, value=value,
        lower_is_better=lower_is_better(metric) if direction is None else bool(direction),
        step_hint=None if step_hint is None else int(step_hint),
        test_value=None if test_value is None else float(test_value),
        base_workload=entry.get("base_workload"),
        max_allowed_runtime_sec=None if runtime is None else float(runtime))


def load_targets_file(path: str) -> TargetsTable:
    try:
        with open(path) as f:
            table = json.load(f)
    except OSError as e:
        raise ScoringInputError(path, f"cannot read targets file ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ScoringInputError(path, f"not valid JSON (line {e.lineno}: {e.msg})") from None
    return targets_from_dict(table, os.fspath(path))


def load_registry_targets() -> TargetsTable:
    """Targets of the project's own workloads; imported lazily so scoring needs no model code."""
    try:
        from workloads.registry import targets_table
        table = targets_table()
    except ImportError as e:
        raise TargetsUnavailableError(
            "workloads.registry", f"cannot import the workload registry ({e}); pass "
            "--targets_file (e.g. ../shared/algoperf_v05/workload_targets_v05.json)") from None
    return targets_from_dict(table, "workloads.registry")


def load_targets(targets=None) -> TargetsTable:
    """A ``TargetsTable`` from a path, a dict in the JSON format, a table, or the registry."""
    if isinstance(targets, TargetsTable):
        return targets
    if isinstance(targets, Mapping):
        return targets_from_dict(targets, "<targets dict>")
    if targets is None:
        return load_registry_targets()
    return load_targets_file(os.fspath(targets))
