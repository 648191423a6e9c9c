"""A submission's state in a checkpoint: any tree it can hold, restored as it was.

``optimizer_state`` and ``model_state`` are whatever a submission returns: dicts, lists,
tuples, namedtuples (often its ``Hyperparameters``), dataclasses, torch optimizers and
schedulers, plain objects, tensors. ``encode`` turns such a tree into one that pickles, and
``restore`` turns it back, into the live tree that ``init_optimizer_state`` has just built:

    node                               encoded as                  restored as
    has state_dict()/load_state_dict   its state_dict()            live.load_state_dict(...)
    a model parameter                  its name                    the live model's parameter
    dict / list                        same, children encoded      filled in place (identity
                                                                   kept) or new
    tuple / namedtuple                 fields and values           the live namedtuple's type
    dataclass / object with __dict__   its class and attributes    attributes set on the live
                                                                   object (or a new one)
    the same object twice              a reference to the first    the same restored object
    any other value                    itself, if it pickles       itself
    a value that does not pickle       nothing (reported)          the live value

Parameters are stored by name because a pickled copy of a parameter inside, say, a custom
optimizer object would come back detached from the model, and the resumed run would train a
copy. A value that cannot be pickled (a lambda, a generator, a lock) is reported by its path
inside the state (``optimizer_state['fn']``); the rest of the checkpoint is still written, and a
resumed trial keeps what ``init_optimizer_state`` gave for it.
"""
import collections
import dataclasses
import enum
import functools
import pickle
import types
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

TAG = "__algoperf_checkpoint__"
_SCALARS = (bool, int, float, complex, str, bytes, type(None), enum.Enum)
# Pickled by reference (or not at all), never walked into.
_CODE = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType, type,
         functools.partial)


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the live state it is restored into."""


def _node(kind: str, **fields) -> Dict[str, Any]:
    return {TAG: kind, **fields}


def _kind(value: Any) -> Optional[str]:
    return value.get(TAG) if isinstance(value, dict) else None


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


_OBJECT_GETSTATE = getattr(object, "__getstate__", None)  # Python >= 3.11


def _pickles_itself(value: Any) -> bool:
    """True when the class customises its own pickling (then it is pickled whole)."""
    cls = type(value)
    return (cls.__reduce_ex__ is not object.__reduce_ex__
            or cls.__reduce__ is not object.__reduce__
            or getattr(cls, "__getstate__", _OBJECT_GETSTATE) is not _OBJECT_GETSTATE
            or hasattr(cls, "__setstate__"))


def _pickle_problem(value: Any) -> Optional[str]:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return None
    except Exception as error:  # noqa: BLE001 - pickle raises many types; the message matters
        return f"{type(error).__name__}: {error}"


class _Encoder:
    def __init__(self, param_names: Mapping[int, str], is_array: Callable[[Any], bool]):
        self.param_names, self.is_array = param_names, is_array
        self.seen: Dict[int, str] = {}
        self.keep_alive: List[Any] = []  # ids stay unique while encoding
        self.unsaved: List[Tuple[str, str]] = []

    def encode(self, value: Any, path: str) -> Any:
        if id(value) in self.param_names:
            return _node("param", name=self.param_names[id(value)])
        if isinstance(value, _SCALARS) or self.is_array(value):
            return value
        if id(value) in self.seen:
            return _node("ref", path=self.seen[id(value)])
        self.seen[id(value)] = path
        self.keep_alive.append(value)
        if callable(getattr(value, "state_dict", None)) and callable(
                getattr(value, "load_state_dict", None)) and not isinstance(value, type):
            return _node("state_dict", value=value.state_dict())
        if isinstance(value, dict):
            return _node("dict", items=[(k, self.encode(v, f"{path}[{k!r}]"))
                                        for k, v in value.items()])
        if _is_namedtuple(value):
            return _node("namedtuple", type=type(value).__name__, fields=list(value._fields),
                         values=[self.encode(v, f"{path}.{f}")
                                 for f, v in zip(value._fields, value)])
        if isinstance(value, (list, tuple)):
            return _node(type(value).__name__,
                         values=[self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)])
        if isinstance(value, _CODE):
            pass
        elif dataclasses.is_dataclass(value) and not hasattr(value, "__dict__"):
            return self._object(value, path, {f.name: getattr(value, f.name)
                                              for f in dataclasses.fields(value)})
        elif hasattr(value, "__dict__") and not _pickles_itself(value):
            return self._object(value, path, vars(value))
        problem = _pickle_problem(value)
        if problem is not None:
            self.unsaved.append((path, f"{type(value).__name__} cannot be pickled ({problem})"))
            return _node("unsaved")
        return value

    def _object(self, value: Any, path: str, attrs: Mapping[str, Any]) -> Dict[str, Any]:
        cls = type(value)
        return _node("object", cls=cls if _pickle_problem(cls) is None else None,
                     name=cls.__qualname__,
                     attrs=[(k, self.encode(v, f"{path}.{k}")) for k, v in attrs.items()])


def encode(tree: Any, param_names: Mapping[int, str], is_array: Callable[[Any], bool],
           root: str = "optimizer_state") -> Tuple[Any, List[Tuple[str, str]]]:
    """(a picklable copy of ``tree``, [(path, why) of each value left out])."""
    encoder = _Encoder(param_names, is_array)
    return encoder.encode(tree, root), encoder.unsaved


class _Restorer:
    def __init__(self, params: Mapping[str, Any]):
        self.params = params
        self.by_path: Dict[str, Any] = {}

    def restore(self, live: Any, saved: Any, path: str) -> Any:
        kind = _kind(saved)
        if kind is None:
            return saved
        if kind == "param":
            if saved["name"] not in self.params:
                raise CheckpointError(f"{path}: the checkpoint refers to parameter "
                                      f"{saved['name']!r}, which the model does not have")
            return self.params[saved["name"]]
        if kind == "ref":
            return self.by_path[saved["path"]]
        if kind == "unsaved":
            return live
        restored = self._restore_node(kind, live, saved, path)
        self.by_path[path] = restored
        return restored

    def _restore_node(self, kind: str, live: Any, saved: Dict[str, Any], path: str) -> Any:
        if kind == "state_dict":
            if not callable(getattr(live, "load_state_dict", None)):
                raise CheckpointError(
                    f"{path}: saved through state_dict(), but init_optimizer_state's state has "
                    f"{type(live).__name__} there, with no load_state_dict")
            live.load_state_dict(saved["value"])
            return live
        if kind == "dict":
            self.by_path[path] = live if isinstance(live, dict) else {}
            live_items = live if isinstance(live, dict) else {}
            items = {k: self.restore(live_items.get(k), v, f"{path}[{k!r}]")
                     for k, v in saved["items"]}
            target = self.by_path[path]
            target.clear()
            target.update(items)
            return target
        if kind == "namedtuple":
            live_values = list(live) if _is_namedtuple(live) else []
            values = [self.restore(live_values[i] if i < len(live_values) else None, v,
                                   f"{path}.{f}")
                      for i, (f, v) in enumerate(zip(saved["fields"], saved["values"]))]
            if _is_namedtuple(live) and list(live._fields) == saved["fields"]:
                return type(live)._make(values)
            return collections.namedtuple(saved["type"], saved["fields"])._make(values)
        if kind in ("list", "tuple"):
            live_values = list(live) if isinstance(live, (list, tuple)) else []
            if kind == "list":
                self.by_path[path] = live if isinstance(live, list) else []
            values = [self.restore(live_values[i] if i < len(live_values) else None, v,
                                   f"{path}[{i}]") for i, v in enumerate(saved["values"])]
            if kind == "tuple":
                return tuple(values)
            target = self.by_path[path]
            target[:] = values
            return target
        if kind == "object":
            return self._restore_object(live, saved, path)
        raise CheckpointError(f"{path}: unknown checkpoint node {kind!r}")

    def _restore_object(self, live: Any, saved: Dict[str, Any], path: str) -> Any:
        cls = saved["cls"]
        if live is not None and type(live).__qualname__ == saved["name"] and (
                cls is None or type(live) is cls):
            target = live
        elif cls is not None:
            target = cls.__new__(cls)
        else:
            raise CheckpointError(
                f"{path}: a {saved['name']} whose class cannot be imported again, and "
                "init_optimizer_state's state has no object of that class there to restore into")
        self.by_path[path] = target
        for name, value in saved["attrs"]:
            live_value = getattr(live, name, None) if live is target else None
            object.__setattr__(target, name, self.restore(live_value, value, f"{path}.{name}"))
        return target


def restore(live: Any, saved: Any, params: Mapping[str, Any],
            root: str = "optimizer_state") -> Any:
    """The state ``encode`` saved, rebuilt into ``live`` (the freshly initialised state)."""
    return _Restorer(params).restore(live, saved, root)
