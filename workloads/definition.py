"""Framework-neutral workload definitions: targets, budgets, sizes, model configuration.

A definition is what scoring and the runner need to know without any model code. It names
its family's data layer and framework models; ``workloads.registry`` composes the three into
the workload class of a framework.
"""
import functools
import inspect
import os
from typing import Dict, List, Optional

from algoperf import eval_guard, spec
from algoperf.benchmark_rules import reached

# Entry points to a split's data: a call from submission code for a held-out split is
# recorded by algoperf.eval_guard (eval_model touches every split).
_DATA_ENTRY_POINTS = ("load_arrays", "_build_input_queue", "_eval_model_on_split", "_read",
                      "_split", "eval_model")


def _guarded(method, name: str):
    parameters = list(inspect.signature(method).parameters)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if eval_guard.in_submission_code():
            bound = dict(zip(parameters[1:], args), **kwargs)
            split = bound.get("split")
            if name == "eval_model" or split in eval_guard.HELD_OUT_SPLITS:
                eval_guard.note(f"workload.{name}(split={split!r})" if split else
                                f"workload.{name}()")
        return method(self, *args, **kwargs)
    wrapper.__eval_guarded__ = True
    return wrapper


class WorkloadDefinition(spec.Workload):
    """Constants of a workload, declared as class attributes by each workload.

    Subclasses set: ``name``, ``base_workload_name`` (itself for a base workload),
    ``target_metric_name``, ``validation_target_value``, ``test_target_value``,
    ``max_allowed_runtime_sec``, ``eval_period_time_sec``, ``step_hint``, the split sizes,
    ``eval_batch_size``, ``loss_type``, ``train_mean``, ``train_stddev`` and ``dataset``
    (the folder name under ``--data_dir``).
    """

    name: str = ""
    base_workload_name: str = ""
    dataset: str = ""
    # "module:Class" of the family's data layer (workloads.data_layer.DataLayer) and, per
    # framework, of its model mixin (workloads.pytorch_workload.PyTorchModel, ...).
    data_layer: str = ""
    models: Dict[str, str] = {}
    # Tiny-tier workloads generate their own data when --data_dir has none.
    generated_data: bool = False
    # What submission time is measured on (algoperf.clocks): AlgoPerf's wall time, unless a
    # workload says otherwise (the tiny tier: process CPU time).
    clock: str = "wall"
    # When evals come (algoperf.runner.Limits.eval_due): None is AlgoPerf's rule, one every
    # eval_period_time_sec of submission time; k puts them on the step grid 1, k, 2k, ...
    eval_period_steps: Optional[int] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _DATA_ENTRY_POINTS:  # own or inherited (a framework mixin's)
            method = getattr(cls, name, None)
            if inspect.isfunction(method) and not getattr(method, "__eval_guarded__", False):
                setattr(cls, name, _guarded(method, name))

    @property
    def is_variant(self) -> bool:
        return self.name != self.base_workload_name

    def held_out_folders(self, data_dir: str) -> List[str]:
        """Folders of held-out data (``algoperf.eval_guard.protect``): the prepared layout's
        ``<data_dir>/<dataset>/<validation|test>/``."""
        return [os.path.join(data_dir, self.dataset, split)
                for split in eval_guard.HELD_OUT_SPLITS]

    def has_reached_validation_target(self, eval_result: Dict[str, float]) -> bool:
        return reached(eval_result.get(f"validation/{self.target_metric_name}"),
                       self.validation_target_value, self.target_metric_name)

    def has_reached_test_target(self, eval_result: Dict[str, float]) -> bool:
        return reached(eval_result.get(f"test/{self.target_metric_name}"),
                       self.test_target_value, self.target_metric_name)

    @classmethod
    def targets_entry(cls) -> Dict[str, object]:
        """This workload's entry in the frozen-targets JSON format used by scoring."""
        return {"target_metric_name": cls.target_metric_name,
                "validation_target_value": cls.validation_target_value,
                "test_target_value": cls.test_target_value,
                "step_hint": cls.step_hint,
                "max_allowed_runtime_sec": cls.max_allowed_runtime_sec}


class TinyTier:
    """Mixed into a ``_tiny`` workload's definition: what the tier has in common.

    It generates its own data when ``--data_dir`` has none, and its clock is the trial's
    process CPU time: its trials run seconds to minutes, two at a time on a laptop's cores,
    where wall time would measure whatever else the machine does (``algoperf.clocks``).

    Its evals come on a step grid (each definition's ``eval_period_steps``: 5% of NAdamW's
    median steps to target, ``eval_period_calibration`` in its ``tiny_targets.json``), not
    every ``eval_period_time_sec``. Training is deterministic, so a time grid's only effect
    here is to evaluate other steps in every run; where the validation metric still swings
    by several points from one step to the next near the target (the tiny ViT, mnist_tiny),
    that alone moved a time to target by up to 25% between two otherwise identical runs. On
    a step grid every run sees the same eval steps, and what is left of the run-to-run
    spread is the per-step time. ``eval_period_time_sec`` stays declared (5% of NAdamW's
    median time to target) for code that reads it, as AlgoPerf's API has it.
    """
    generated_data = True
    clock = "process_cpu"
