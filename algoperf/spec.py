"""The submission API, with AlgoPerf's names and meanings.

A submission written for AlgoPerf does ``from algoperf import spec`` and uses these enums,
type aliases, ``Workload`` and ``TrainingCompleteError``; everything here keeps the exact
names so such files run unchanged. Framework-neutral: no torch or jax import at module level.
"""
import abc
import enum
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union


class LossType(enum.Enum):
    SOFTMAX_CROSS_ENTROPY = 0
    SIGMOID_CROSS_ENTROPY = 1
    MEAN_SQUARED_ERROR = 2
    CTC_LOSS = 3
    MEAN_ABSOLUTE_ERROR = 4


class ForwardPassMode(enum.Enum):
    TRAIN = 0
    EVAL = 1


class ParameterType(enum.Enum):
    WEIGHT = 0
    BIAS = 1
    CONV_WEIGHT = 2
    BATCH_NORM_SCALE = 3
    BATCH_NORM_BIAS = 4
    LAYER_NORM_SCALE = 5
    LAYER_NORM_BIAS = 6
    EMBEDDING = 7
    ATTENTION_Q = 8
    ATTENTION_K = 9
    ATTENTION_V = 10
    ATTENTION_OUT = 11
    ATTENTION_QKV = 12
    ATTENTION_KV = 13
    ATTENTION_BIAS = 14


Tensor = Any  # torch.Tensor, jax.Array or np.ndarray, depending on the framework.


class ShapeTuple:
    """A shape that tree utilities treat as a leaf (a plain tuple would be iterated)."""

    def __init__(self, shape_tuple):
        self.shape_tuple = tuple(shape_tuple)

    def __repr__(self):
        return f"ShapeTuple({self.shape_tuple})"

    def __eq__(self, other):
        return isinstance(other, ShapeTuple) and self.shape_tuple == other.shape_tuple

    def __hash__(self):
        return hash(self.shape_tuple)


Shape = Union[Tuple[int, ...], ShapeTuple]
ParameterShapeTree = Dict[str, Any]
ParameterKey = str
ParameterContainer = Any  # torch.nn.Module (PyTorch) or a nested dict of arrays (JAX).
ParameterTypeTree = Dict[ParameterKey, Any]
RandomState = Any  # a key from algoperf.random_utils
OptimizerState = Union[Dict[str, Any], Tuple[Any, Any]]
Hyperparameters = Any  # a namedtuple (external tuning) or None (self-tuning)
Timing = int
Steps = int
ModelAuxiliaryState = Any  # e.g. batch-norm running statistics
ModelInitState = Tuple[ParameterContainer, ModelAuxiliaryState]


class TrainingCompleteError(Exception):
    """Raised by ``update_params`` to end training early; the run gets one final eval."""


class Workload(metaclass=abc.ABCMeta):
    """What a submission sees of a workload. Concrete workloads live in ``workloads/``."""

    def __init__(self, *args, **kwargs) -> None:
        del args, kwargs
        self._param_shapes: Optional[ParameterShapeTree] = None
        self._param_types: Optional[ParameterTypeTree] = None
        self._eval_iters: Dict[str, Iterator] = {}
        self.metrics_logger = None

    # --- definition: targets, budgets, sizes -------------------------------------------
    @property
    @abc.abstractmethod
    def target_metric_name(self) -> str:
        """Name of the validation/test metric the targets refer to (e.g. 'accuracy')."""

    @property
    @abc.abstractmethod
    def validation_target_value(self) -> float: ...

    @property
    @abc.abstractmethod
    def test_target_value(self) -> float: ...

    @abc.abstractmethod
    def has_reached_validation_target(self, eval_result: Dict[str, float]) -> bool: ...

    @abc.abstractmethod
    def has_reached_test_target(self, eval_result: Dict[str, float]) -> bool: ...

    @property
    @abc.abstractmethod
    def loss_type(self) -> LossType: ...

    @property
    @abc.abstractmethod
    def num_train_examples(self) -> int: ...

    @property
    @abc.abstractmethod
    def num_eval_train_examples(self) -> int: ...

    @property
    @abc.abstractmethod
    def num_validation_examples(self) -> int: ...

    @property
    @abc.abstractmethod
    def num_test_examples(self) -> int: ...

    @property
    @abc.abstractmethod
    def eval_batch_size(self) -> int: ...

    @property
    @abc.abstractmethod
    def train_mean(self) -> Any: ...

    @property
    @abc.abstractmethod
    def train_stddev(self) -> Any: ...

    @property
    @abc.abstractmethod
    def max_allowed_runtime_sec(self) -> int: ...

    @property
    @abc.abstractmethod
    def eval_period_time_sec(self) -> int: ...

    @property
    @abc.abstractmethod
    def step_hint(self) -> int:
        """Roughly the number of steps the baseline takes within the budget."""

    # --- model --------------------------------------------------------------------------
    @property
    def param_shapes(self) -> ParameterShapeTree:
        if self._param_shapes is None:
            raise ValueError("workload.init_model_fn() must be called before workload.param_shapes")
        return self._param_shapes

    @property
    def model_params_types(self) -> ParameterTypeTree:
        if self._param_types is None:
            raise ValueError(
                "workload.init_model_fn() must be called before workload.model_params_types")
        return self._param_types

    @abc.abstractmethod
    def is_output_params(self, param_key: ParameterKey) -> bool: ...

    @abc.abstractmethod
    def init_model_fn(self, rng: RandomState) -> ModelInitState: ...

    @abc.abstractmethod
    def model_fn(self, params: ParameterContainer,
                 augmented_and_preprocessed_input_batch: Dict[str, Tensor],
                 model_state: ModelAuxiliaryState, mode: ForwardPassMode, rng: RandomState,
                 update_batch_norm: bool, dropout_rate: float = 0.0
                 ) -> Tuple[Tensor, ModelAuxiliaryState]:
        """Return (logits_batch, new_model_state)."""

    @abc.abstractmethod
    def loss_fn(self, label_batch: Tensor, logits_batch: Tensor,
                mask_batch: Optional[Tensor] = None, label_smoothing: float = 0.0
                ) -> Dict[str, Tensor]:
        """Return {'summed', 'n_valid_examples', 'per_example'}, not synced across devices."""

    # --- data and evaluation (harness-only) ----------------------------------------------
    @abc.abstractmethod
    def _build_input_queue(self, data_rng: RandomState, split: str, data_dir: str,
                           global_batch_size: int, cache: Optional[bool] = None,
                           repeat_final_dataset: Optional[bool] = None,
                           num_batches: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """The harness's input pipeline; submissions may not call it."""

    @abc.abstractmethod
    def eval_model(self, global_batch_size: int, params: ParameterContainer,
                   model_state: ModelAuxiliaryState, rng: RandomState, data_dir: str,
                   imagenet_v2_data_dir: Optional[str], global_step: int) -> Dict[str, float]:
        """Return {'train/<m>', 'validation/<m>', 'test/<m>', '<split>/num_examples'}."""

    def attach_metrics_logger(self, metrics_logger) -> None:
        self.metrics_logger = metrics_logger


# Signatures of the functions a submission module defines (for type hints in submissions).
InitOptimizerFn = Callable[
    [Workload, ParameterContainer, ModelAuxiliaryState, Hyperparameters, RandomState],
    OptimizerState]
UpdateReturn = Tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]
UpdateParamsFn = Callable[
    [Workload, ParameterContainer, ParameterTypeTree, ModelAuxiliaryState, Hyperparameters,
     Dict[str, Tensor], LossType, OptimizerState, List[Tuple[int, float]], int, RandomState,
     Optional[Dict[str, Any]]],
    UpdateReturn]
PrepareForEvalFn = Callable[
    [Workload, ParameterContainer, ParameterTypeTree, ModelAuxiliaryState, Hyperparameters,
     LossType, OptimizerState, List[Tuple[int, float]], int, RandomState],
    UpdateReturn]
DataSelectionFn = Callable[
    [Workload, Iterator[Dict[str, Any]], OptimizerState, ParameterContainer,
     ModelAuxiliaryState, Hyperparameters, int, RandomState],
    Dict[str, Tensor]]
GetBatchSizeFn = Callable[[str], int]
