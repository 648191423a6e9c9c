"""Workloads by name: a definition class each; the registry builds the framework's class.

    WORKLOADS[name] = "module:DefinitionClass"    (targets, budgets, sizes, model config)

A definition names its family's data layer (``data_layer``, numpy: batches, evals, metrics)
and its framework models (``models[framework]``: the model, its loss and device step), and the
class of a workload in a framework is built here, once per (name, framework), as

    class <Name>Workload(<family model mixin>, <family data layer>, <definition>)

so a variant (``cifar_wrn_silu``) is a definition only: its constants change the model and
data, without a subclass per variant and framework. Scoring reads ``targets_table()``, which
imports definitions only; the runner calls ``get_workload(name, framework, backend)``.
"""
import functools
import importlib
import os
from typing import Dict, List, Optional

WORKLOADS: Dict[str, str] = {
    "mnist": "workloads.mnist.definition:MnistDefinition",
    "mnist_tiny": "workloads.mnist.definition:MnistTinyDefinition",
    "cifar_wrn": "workloads.cifar_wrn.definition:CifarWrnDefinition",
    "cifar_wrn_silu": "workloads.cifar_wrn.definition:CifarWrnSiluDefinition",
    "cifar_wrn_groupnorm": "workloads.cifar_wrn.definition:CifarWrnGroupNormDefinition",
    "cifar_wrn_tiny": "workloads.cifar_wrn.definition:CifarWrnTinyDefinition",
    "ogbg": "workloads.ogbg.definition:OgbgDefinition",
    "ogbg_gelu": "workloads.ogbg.definition:OgbgGeluDefinition",
    "ogbg_silu": "workloads.ogbg.definition:OgbgSiluDefinition",
    "ogbg_model_size": "workloads.ogbg.definition:OgbgModelSizeDefinition",
    "ogbg_tiny": "workloads.ogbg.definition:OgbgTinyDefinition",
    "imagenet_vit": "workloads.imagenet_vit.definition:ImagenetVitDefinition",
    "imagenet_vit_glu": "workloads.imagenet_vit.definition:ImagenetVitGluDefinition",
    "imagenet_vit_post_ln": "workloads.imagenet_vit.definition:ImagenetVitPostLnDefinition",
    "imagenet_vit_map": "workloads.imagenet_vit.definition:ImagenetVitMapDefinition",
    "imagenet_vit_tiny": "workloads.imagenet_vit.definition:ImagenetVitTinyDefinition",
}

# Where generated (tiny-tier) data goes when --data_dir is not given.
DEFAULT_GENERATED_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "algoperf", "data")


class UnknownWorkloadError(ValueError):
    pass


def names() -> List[str]:
    return sorted(WORKLOADS)


def _import(path: str):
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def get_definition(name: str):
    if name not in WORKLOADS:
        raise UnknownWorkloadError(f"--workload={name!r} is not a known workload; known: "
                                   f"{', '.join(names())}")
    return _import(WORKLOADS[name])


def frameworks(name: str) -> List[str]:
    """The frameworks ``name`` is implemented in."""
    return sorted(get_definition(name).models)


@functools.lru_cache(maxsize=None)
def workload_class(name: str, framework: str = "pytorch") -> type:
    """``<Name>Workload``: the family's model mixin + data layer + the definition."""
    definition = get_definition(name)
    if framework not in definition.models:
        raise UnknownWorkloadError(f"--workload={name!r} has no {framework} implementation; "
                                   f"available: {', '.join(frameworks(name))}")
    model, data = _import(definition.models[framework]), _import(definition.data_layer)
    class_name = "".join(part.capitalize() for part in name.split("_")) + "Workload"
    return type(class_name, (model, data, definition), {"__module__": model.__module__})


def get_workload(name: str, framework: str = "pytorch", backend=None):
    """A workload object; ``backend`` is the run's framework backend (default: a fresh one
    for this process, e.g. in tests and benchmarks)."""
    cls = workload_class(name, framework)
    if backend is None:
        from algoperf.backends import get_backend
        backend = get_backend(framework)
    return cls(backend=backend)


def resolve_data_dir(workload, data_dir: Optional[str]) -> str:
    if data_dir:
        return data_dir
    if workload.generated_data:
        return os.environ.get("ALGOPERF_DATA_DIR", DEFAULT_GENERATED_DATA_DIR)
    raise FileNotFoundError(
        f"--data_dir is required for {workload.name}: prepare the data once with "
        f"`algoperf data --dataset {workload.dataset} --data_dir DIR`")


def check_data(workload, data_dir: str) -> None:
    """Fail before any trial if the training data cannot be read (generates tiny data)."""
    workload.load_arrays(data_dir, "train")


def targets_table(workload_names: Optional[List[str]] = None) -> Dict[str, object]:
    """Targets in the frozen-targets JSON format that ``scoring`` reads."""
    workload_names = workload_names or names()
    definitions = {n: get_definition(n) for n in workload_names}
    return {
        "benchmark_version": "algoperf-registry",
        "base_workloads": [n for n, d in definitions.items() if d.base_workload_name == n],
        "held_out_workloads": [],
        "workloads": {n: d.targets_entry() for n, d in definitions.items()},
    }
