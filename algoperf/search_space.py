"""Tuning search spaces: load ``tuning_search_space.json`` and draw trial hyperparameters.

Under the external-tuning ruleset every trial gets one point of the submission's search space.
The file has one of AlgoPerf's two forms:

1. An object of hyperparameter ranges, drawn quasi-randomly::

     {"learning_rate": {"min": 1e-4, "max": 1e-2, "scaling": "log"},
      "warmup_factor": {"min": 0.0, "max": 0.1, "scaling": "linear"},
      "label_smoothing": {"feasible_points": [0.1, 0.2]}}

   ``scaling`` is required, as in AlgoPerf (whose loader fails without it).

2. A list of complete points, used in order (trial t gets entry t)::

     [{"learning_rate": 0.001, "warmup_factor": 0.05}, {"learning_rate": 0.003, ...}]

Drawing the object form. Let D be the number of hyperparameters that can take more than one
value and u_t in [0, 1)^D point t of a scrambled, shuffled generalized Halton sequence
(``algoperf.halton``, Bousquet et al., 2017); coordinate u of a hyperparameter becomes

    linear  [min, max]:       x = min + u (max - min)
    log     [min, max]:       x = exp(log min + u (log max - log min))   (uniform in log x)
    feasible v_0..v_{K-1}:    x = v_floor(u K)                           (each v_k w.p. 1/K)

Halton dimensions are handed out in file order, so the first varying hyperparameter gets base
2, the best-stratified coordinate (put the most important one first). Constants (a single
feasible point, or min == max) take no dimension: adding one does not move the others.

Hyperparameters reach the submission as a namedtuple named ``Hyperparameters`` whose fields are
in file order (AlgoPerf's order; for the list form, the order of the first entry), holding plain
Python values: floats for ranges, feasible points as written in the file (int, float, str,
bool or None).

Differences from AlgoPerf, all on inputs AlgoPerf mishandles: a malformed file raises one
``SearchSpaceError`` naming the file and the problem (AlgoPerf raises a bare KeyError, or
silently treats an unknown scaling as linear); a list with fewer points than trials is an
error (AlgoPerf quietly runs fewer trials); the draw is seeded (AlgoPerf shuffles with the
global numpy state).
"""
import collections
import dataclasses
import functools
import json
import keyword
import math
import os
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from algoperf import halton

PathLike = Union[str, os.PathLike]
Value = Union[float, int, str, bool, None]

SCALINGS = ("linear", "log")
_RANGE_KEYS = ("min", "max", "scaling")
_FEASIBLE_KEY = "feasible_points"


class SearchSpaceError(ValueError):
    """A tuning search space that cannot be used; ``str()`` names the file and the problem."""

    def __init__(self, path: PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"tuning search space {self.path}: {problem}")


# --------------------------------------------------------------------------- the space


@dataclasses.dataclass(frozen=True)
class Interval:
    """A continuous hyperparameter drawn from [low, high], uniformly in x or in log x."""

    name: str
    low: float
    high: float
    scaling: str  # one of SCALINGS

    @property
    def is_constant(self) -> bool:
        return self.low == self.high

    def from_unit(self, u: np.ndarray) -> List[float]:
        """Maps u in [0, 1) to x (module docstring); clipped because exp(log(high)) may
        round one ulp past ``high``."""
        if self.scaling == "log":
            log_low, log_high = math.log(self.low), math.log(self.high)
            x = np.exp(log_low + u * (log_high - log_low))
        else:
            x = self.low + u * (self.high - self.low)
        return [float(v) for v in np.clip(x, self.low, self.high)]


@dataclasses.dataclass(frozen=True)
class FeasiblePoints:
    """A hyperparameter taking one of the listed values, each with probability 1/K."""

    name: str
    values: Tuple[Value, ...]

    @property
    def is_constant(self) -> bool:
        return len(self.values) == 1

    def from_unit(self, u: np.ndarray) -> List[Value]:
        """Maps u in [0, 1) to v_floor(u K)."""
        k = len(self.values)
        indices = np.minimum((np.asarray(u) * k).astype(np.int64), k - 1)
        return [self.values[i] for i in indices]


Dimension = Union[Interval, FeasiblePoints]


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A parsed search space: either ``dimensions`` (object form) or ``points`` (list form).

    Attributes:
      path: where it came from (file path, or a label such as "<dict>"), used in errors.
      names: hyperparameter names, in namedtuple field order (file order).
      dimensions: one ``Interval`` or ``FeasiblePoints`` per name (object form), else ().
      points: the complete points in file order (list form), else ().
    """

    path: str
    names: Tuple[str, ...]
    dimensions: Tuple[Dimension, ...] = ()
    points: Tuple[Mapping[str, Value], ...] = ()

    @property
    def is_point_list(self) -> bool:
        return bool(self.points)


# --------------------------------------------------------------------------- loading


class _DuplicateKey(Exception):
    """Raised from inside json.loads; turned into a SearchSpaceError by the caller."""


def _reject_duplicate_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    # json.loads silently keeps the last of two equal keys; a search space that names a
    # hyperparameter twice is a mistake whichever value was meant.
    seen: Dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _read_json(path: PathLike) -> Any:
    """The parsed JSON in ``path``, or a SearchSpaceError saying why it cannot be read."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SearchSpaceError(path, "no such file") from None
    except IsADirectoryError:
        raise SearchSpaceError(path, "is a directory, expected a JSON file") from None
    except UnicodeDecodeError as e:
        raise SearchSpaceError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise SearchSpaceError(path, f"cannot be read: {e.strerror}") from None
    if not text.strip():
        raise SearchSpaceError(path, "the file is empty, expected JSON")
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as e:
        raise SearchSpaceError(
            path, f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except _DuplicateKey as e:
        raise SearchSpaceError(path, f"key {e.args[0]!r} appears twice in one object") from None


def load_search_space(path: PathLike) -> SearchSpace:
    """Reads and validates an AlgoPerf ``tuning_search_space.json`` (either form).

    Raises:
      SearchSpaceError: the file is missing, unreadable, not JSON, or not a valid search space;
        the message names the file and the exact problem.
    """
    return parse_search_space(_read_json(path), os.fspath(path))


def parse_search_space(obj: Any, path: str = "<search space>") -> SearchSpace:
    """Validates an already-parsed search space; ``path`` labels it in error messages."""
    if isinstance(obj, dict):
        return _parse_ranges(obj, path)
    if isinstance(obj, list):
        return _parse_points(obj, path)
    raise SearchSpaceError(
        path, "the top level must be an object {name: {min, max, scaling} or "
        f"{{feasible_points}}}} or a list of complete points, got {_json_type(obj)}")


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _check_name(name: str, path: str) -> None:
    # Names become namedtuple fields, which must be identifiers, not keywords, not "_x".
    if (not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name)
            or name.startswith("_")):
        raise SearchSpaceError(
            path, f"hyperparameter name {name!r} is not usable as a Python attribute "
            "(use letters, digits and underscores, not starting with a digit or underscore, "
            "and not a Python keyword)")


def _check_value(value: Any, where: str, path: str) -> Value:
    """A hyperparameter value must be a JSON scalar; numbers must be finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SearchSpaceError(path, f"{where} is {value}, expected a finite number")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise SearchSpaceError(
        path, f"{where} is {_json_type(value)}, expected a number, string, boolean or null")


def _check_bound(spec: Mapping[str, Any], key: str, name: str, path: str) -> float:
    value = spec[key]
    # bool is an int subclass in Python; true/false as a bound is a mistake, not 1/0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SearchSpaceError(
            path, f"hyperparameter {name!r}: {key!r} must be a number, got "
            f"{_json_type(value)} {json.dumps(value)}")
    if not math.isfinite(value):
        raise SearchSpaceError(path, f"hyperparameter {name!r}: {key!r} is {value}, "
                               "expected a finite number")
    return float(value)


def _parse_ranges(obj: Mapping[str, Any], path: str) -> SearchSpace:
    """The object form: {name: {min, max, scaling} | {feasible_points}}."""
    if not obj:
        raise SearchSpaceError(path, "the object defines no hyperparameters")
    dimensions = []
    for name, spec in obj.items():
        _check_name(name, path)
        if not isinstance(spec, dict):
            raise SearchSpaceError(
                path, f"hyperparameter {name!r} must be an object with min/max/scaling or "
                f"feasible_points, got {_json_type(spec)}")
        if _FEASIBLE_KEY in spec:
            dimensions.append(_parse_feasible_points(name, spec, path))
        else:
            dimensions.append(_parse_interval(name, spec, path))
    return SearchSpace(path=path, names=tuple(obj), dimensions=tuple(dimensions))


def _parse_feasible_points(name: str, spec: Mapping[str, Any], path: str) -> FeasiblePoints:
    extra = sorted(set(spec) - {_FEASIBLE_KEY})
    if extra:
        raise SearchSpaceError(
            path, f"hyperparameter {name!r}: 'feasible_points' cannot be combined with "
            f"{extra}; give either feasible_points or min/max/scaling")
    values = spec[_FEASIBLE_KEY]
    if not isinstance(values, list):
        raise SearchSpaceError(path, f"hyperparameter {name!r}: 'feasible_points' must be a "
                               f"list, got {_json_type(values)}")
    if not values:
        raise SearchSpaceError(path, f"hyperparameter {name!r}: 'feasible_points' is empty, "
                               "give at least one value")
    checked = tuple(_check_value(v, f"hyperparameter {name!r}: feasible point {i}", path)
                    for i, v in enumerate(values))
    return FeasiblePoints(name=name, values=checked)


def _parse_interval(name: str, spec: Mapping[str, Any], path: str) -> Interval:
    unknown = sorted(set(spec) - set(_RANGE_KEYS))
    if unknown:
        raise SearchSpaceError(
            path, f"hyperparameter {name!r}: unknown key(s) {unknown}; expected "
            "'min', 'max', 'scaling' or 'feasible_points'")
    missing = [k for k in _RANGE_KEYS if k not in spec]
    if missing:
        raise SearchSpaceError(
            path, f"hyperparameter {name!r}: missing key(s) {missing}; a range needs 'min', "
            "'max' and 'scaling' (\"linear\" or \"log\"), a discrete choice 'feasible_points'")
    low = _check_bound(spec, "min", name, path)
    high = _check_bound(spec, "max", name, path)
    scaling = spec["scaling"]
    if scaling not in SCALINGS:
        raise SearchSpaceError(path, f"hyperparameter {name!r}: unknown scaling "
                               f"{json.dumps(scaling)}, expected \"linear\" or \"log\"")
    if low > high:
        raise SearchSpaceError(path, f"hyperparameter {name!r}: min {spec['min']} is greater "
                               f"than max {spec['max']}")
    if scaling == "log" and low <= 0:
        raise SearchSpaceError(path, f"hyperparameter {name!r}: log scaling needs min > 0, "
                               f"got min {spec['min']}")
    return Interval(name=name, low=low, high=high, scaling=scaling)


def _parse_points(obj: Sequence[Any], path: str) -> SearchSpace:
    """The list form: complete points with identical key sets, used in order."""
    if not obj:
        raise SearchSpaceError(path, "the list of points is empty")
    points = []
    for t, point in enumerate(obj):
        if not isinstance(point, dict):
            raise SearchSpaceError(path, f"point {t} must be an object {{name: value}}, got "
                                   f"{_json_type(point)}")
        if not point:
            raise SearchSpaceError(path, f"point {t} defines no hyperparameters")
        if t > 0 and set(point) != set(points[0]):
            missing = sorted(set(points[0]) - set(point))
            extra = sorted(set(point) - set(points[0]))
            raise SearchSpaceError(
                path, f"point {t} has different hyperparameters from point 0 "
                f"(missing {missing}, extra {extra}); every point must set the same ones")
        for name, value in point.items():
            _check_name(name, path)
            _check_value(value, f"point {t}: hyperparameter {name!r}", path)
        points.append(point)
    return SearchSpace(path=path, names=tuple(points[0]), points=tuple(points))


# --------------------------------------------------------------------------- drawing


@functools.lru_cache(maxsize=None)
def hyperparameters_type(names: Tuple[str, ...]) -> type:
    """The namedtuple class ``Hyperparameters`` with fields ``names`` (one class per tuple,
    so draws from one space share a type)."""
    cls = collections.namedtuple("Hyperparameters", names, module=__name__)
    # A class made at run time cannot be found by name when unpickling (checkpoints, deepcopy);
    # rebuild from the plain dict instead.
    cls.__reduce__ = _reduce_hyperparameters
    return cls


def _reduce_hyperparameters(hp: NamedTuple):
    return hyperparameters_from_dict, (hyperparameters_to_dict(hp),)


def draw_hyperparameters(space: SearchSpace, num_trials: int, seed: int = 0) -> List[NamedTuple]:
    """The hyperparameters of trials 1..num_trials under external tuning.

    Object form: the first ``num_trials`` points of the scrambled, shuffled Halton sequence
    seeded by ``seed``, mapped as in the module docstring (same seed, same points; different
    seeds, different points). List form: the first ``num_trials`` points in file order
    (``seed`` unused).

    Raises:
      ValueError: ``num_trials`` < 1 or ``seed`` < 0.
      SearchSpaceError: the list form has fewer than ``num_trials`` points.
    """
    if isinstance(num_trials, bool) or not isinstance(num_trials, (int, np.integer)) \
            or num_trials < 1:
        raise ValueError(f"num_trials must be a positive integer, got {num_trials!r}")
    if space.is_point_list:
        return _points_in_order(space, int(num_trials))
    return _halton_draw(space, int(num_trials), seed)


def _points_in_order(space: SearchSpace, num_trials: int) -> List[NamedTuple]:
    if len(space.points) < num_trials:
        raise SearchSpaceError(
            space.path, f"{num_trials} tuning trials requested but the list has only "
            f"{len(space.points)} point(s); lower --num_tuning_trials or add points")
    cls = hyperparameters_type(space.names)
    return [cls(**point) for point in space.points[:num_trials]]


def _halton_draw(space: SearchSpace, num_trials: int, seed: int) -> List[NamedTuple]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    varying = [d for d in space.dimensions if not d.is_constant]
    unit = halton.scrambled_halton(num_trials, len(varying), int(seed))
    columns = dict(zip((d.name for d in varying), unit.T))
    values: Dict[str, List[Value]] = {}
    for dim in space.dimensions:
        if dim.is_constant:
            values[dim.name] = dim.from_unit(np.zeros(num_trials))
        else:
            values[dim.name] = dim.from_unit(columns[dim.name])
    cls = hyperparameters_type(space.names)
    return [cls(**{name: values[name][t] for name in space.names}) for t in range(num_trials)]


# --------------------------------------------------------------------------- hparams.json


def _plain(value: Any) -> Any:
    # numpy scalars (e.g. a submission-built tuple) are not JSON-serialisable; .item() is.
    return value.item() if isinstance(value, np.generic) else value


def hyperparameters_to_dict(hp: NamedTuple) -> Dict[str, Value]:
    """{field: value} in field order, plain Python values: what ``hparams.json`` holds."""
    if not (isinstance(hp, tuple) and hasattr(hp, "_asdict")):
        raise TypeError(f"expected a Hyperparameters namedtuple, got {type(hp).__name__}")
    return {name: _plain(value) for name, value in hp._asdict().items()}


def hyperparameters_from_dict(values: Mapping[str, Any],
                              path: Optional[PathLike] = None) -> NamedTuple:
    """The ``Hyperparameters`` namedtuple for {field: value} (e.g. a resumed ``hparams.json``),
    fields in the mapping's order.

    Raises:
      ValueError: an empty mapping or a name that cannot be a namedtuple field; the message
        starts with ``path`` when given.
    """
    label = os.fspath(path) if path is not None else "hyperparameters"
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f"{label}: expected a non-empty object {{name: value}}, got {values!r}")
    for name in values:
        try:
            _check_name(name, label)
        except SearchSpaceError as e:
            raise ValueError(f"{label}: {e.problem}") from None
    return hyperparameters_type(tuple(values))(**values)
