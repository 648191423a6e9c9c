"""Framework-neutral workload definitions: targets, budgets, sizes, metric direction.

A definition is what scoring and the runner need to know without any model code. A
framework implementation (``workloads/<name>/pytorch.py``) subclasses its definition.
"""
from typing import Dict

from algoperf import spec
from algoperf.benchmark_rules import reached


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
    # Tiny-tier workloads generate their own data when --data_dir has none.
    generated_data: bool = False

    @property
    def is_variant(self) -> bool:
        return self.name != self.base_workload_name

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
