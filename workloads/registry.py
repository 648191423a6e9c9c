"""Workloads by name. Definitions (targets, budgets) import without any framework.

    WORKLOADS[name] = (definition "module:Class", {framework: implementation "module:Class"})

Scoring reads ``targets_table()``; the runner calls ``get_workload(name, framework)``.
"""
import importlib
import os
from typing import Dict, List, Optional

WORKLOADS: Dict[str, tuple] = {
    "mnist": ("workloads.mnist.definition:MnistDefinition",
              {"pytorch": "workloads.mnist.pytorch:MnistWorkload"}),
    "mnist_tiny": ("workloads.mnist.definition:MnistTinyDefinition",
                   {"pytorch": "workloads.mnist.pytorch:MnistTinyWorkload"}),
    "cifar_wrn": ("workloads.cifar_wrn.definition:CifarWrnDefinition",
                  {"pytorch": "workloads.cifar_wrn.pytorch:CifarWrnWorkload"}),
    "cifar_wrn_silu": ("workloads.cifar_wrn.definition:CifarWrnSiluDefinition",
                       {"pytorch": "workloads.cifar_wrn.pytorch:CifarWrnSiluWorkload"}),
    "cifar_wrn_groupnorm": ("workloads.cifar_wrn.definition:CifarWrnGroupNormDefinition",
                            {"pytorch": "workloads.cifar_wrn.pytorch:CifarWrnGroupNormWorkload"}),
    "cifar_wrn_tiny": ("workloads.cifar_wrn.definition:CifarWrnTinyDefinition",
                       {"pytorch": "workloads.cifar_wrn.pytorch:CifarWrnTinyWorkload"}),
    "ogbg": ("workloads.ogbg.definition:OgbgDefinition",
             {"pytorch": "workloads.ogbg.pytorch:OgbgWorkload"}),
    "ogbg_gelu": ("workloads.ogbg.definition:OgbgGeluDefinition",
                  {"pytorch": "workloads.ogbg.pytorch:OgbgGeluWorkload"}),
    "ogbg_silu": ("workloads.ogbg.definition:OgbgSiluDefinition",
                  {"pytorch": "workloads.ogbg.pytorch:OgbgSiluWorkload"}),
    "ogbg_model_size": ("workloads.ogbg.definition:OgbgModelSizeDefinition",
                        {"pytorch": "workloads.ogbg.pytorch:OgbgModelSizeWorkload"}),
    "ogbg_tiny": ("workloads.ogbg.definition:OgbgTinyDefinition",
                  {"pytorch": "workloads.ogbg.pytorch:OgbgTinyWorkload"}),
    "imagenet_vit": ("workloads.imagenet_vit.definition:ImagenetVitDefinition",
                     {"pytorch": "workloads.imagenet_vit.pytorch:ImagenetVitWorkload"}),
    "imagenet_vit_glu": ("workloads.imagenet_vit.definition:ImagenetVitGluDefinition",
                         {"pytorch": "workloads.imagenet_vit.pytorch:ImagenetVitGluWorkload"}),
    "imagenet_vit_post_ln": (
        "workloads.imagenet_vit.definition:ImagenetVitPostLnDefinition",
        {"pytorch": "workloads.imagenet_vit.pytorch:ImagenetVitPostLnWorkload"}),
    "imagenet_vit_map": ("workloads.imagenet_vit.definition:ImagenetVitMapDefinition",
                         {"pytorch": "workloads.imagenet_vit.pytorch:ImagenetVitMapWorkload"}),
    "imagenet_vit_tiny": ("workloads.imagenet_vit.definition:ImagenetVitTinyDefinition",
                          {"pytorch": "workloads.imagenet_vit.pytorch:ImagenetVitTinyWorkload"}),
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


def _entry(name: str) -> tuple:
    if name not in WORKLOADS:
        raise UnknownWorkloadError(f"--workload={name!r} is not a known workload; known: "
                                   f"{', '.join(names())}")
    return WORKLOADS[name]


def get_definition(name: str):
    return _import(_entry(name)[0])


def get_workload(name: str, framework: str = "pytorch"):
    implementations = _entry(name)[1]
    if framework not in implementations:
        raise UnknownWorkloadError(f"--workload={name!r} has no {framework} implementation; "
                                   f"available: {', '.join(sorted(implementations))}")
    return _import(implementations[framework])()


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
