"""A submission's state through a checkpoint file and back: every kind of node, exactly."""
import collections
import dataclasses
import io
import threading

import numpy as np
import pytest
import torch

from algoperf import checkpoint_state
from algoperf.backends.pytorch import _is_array

Point = collections.namedtuple("Point", ["learning_rate", "beta"])


@dataclasses.dataclass
class Stats:
    steps: int = 0
    history: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Frozen:
    scale: float


class Holder:
    """A plain object: no state_dict, its attributes hold parameters and tensors."""

    def __init__(self, params):
        self.params = list(params)
        self.buffers = [torch.zeros_like(p) for p in self.params]
        self.note = "holder"


def through_file(model, state, live, new_model=None):
    """encode -> torch.save -> torch.load -> restore into ``live`` (the state of a resumed
    run, whose model is ``new_model``); returns (restored, left out)."""
    names = {id(p): n for n, p in model.named_parameters()}
    encoded, left_out = checkpoint_state.encode(state, names, _is_array)
    buffer = io.BytesIO()
    torch.save(encoded, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    params = dict((new_model or model).named_parameters())
    return checkpoint_state.restore(live, loaded, params), left_out


def make_state(model, seed):
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    holder = Holder(model.parameters())
    return {"optimizer": optimizer, "scheduler": scheduler, "hp": Point(0.1, 0.9),
            "stats": Stats(), "frozen": Frozen(2.0), "holder": holder,
            "nested": [{"a": torch.randn(3)}, (1, "two", None), holder],
            "rng": np.random.default_rng(seed), "array": np.arange(4.0)}


def train_a_little(model, state, steps=3):
    for _ in range(steps):
        state["optimizer"].zero_grad()
        model(torch.ones(2, 4)).pow(2).sum().backward()
        state["optimizer"].step()
        state["scheduler"].step()
        for p, b in zip(state["holder"].params, state["holder"].buffers):
            b.add_(p.grad)
        state["stats"].steps += 1
        state["stats"].history.append(float(model.weight.detach().sum()))
        state["nested"][0]["a"].mul_(2)


def test_every_kind_of_node_comes_back_as_it_was():
    model = torch.nn.Linear(4, 2)
    state = make_state(model, 0)
    train_a_little(model, state)
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}

    fresh = torch.nn.Linear(4, 2)
    fresh.load_state_dict(saved_model)
    live = make_state(fresh, 1)  # what init_optimizer_state gives a resumed run
    restored, left_out = through_file(model, state, live, fresh)
    assert left_out == []
    # Objects with state_dict are loaded into the live ones (identity kept).
    assert restored["optimizer"] is live["optimizer"]
    assert restored["scheduler"].last_epoch == 3
    assert restored["optimizer"].param_groups[0]["lr"] == pytest.approx(0.05)
    momentum = restored["optimizer"].state[fresh.weight]["momentum_buffer"]
    assert torch.equal(momentum, state["optimizer"].state[model.weight]["momentum_buffer"])
    # The namedtuple keeps its type (AlgoPerf's Hyperparameters is one).
    assert type(restored["hp"]) is Point and restored["hp"] == Point(0.1, 0.9)
    assert restored["stats"] == Stats(3, state["stats"].history)
    assert restored["frozen"] == Frozen(2.0)
    # The plain object holds the *new* model's parameters, not copies of the old ones.
    holder = restored["holder"]
    assert holder is live["holder"]
    assert all(a is b for a, b in zip(holder.params, fresh.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(holder.buffers, state["holder"].buffers))
    # One object referenced twice is still one object.
    assert restored["nested"][2] is holder
    assert torch.equal(restored["nested"][0]["a"], state["nested"][0]["a"])
    assert restored["nested"][1] == (1, "two", None)
    assert restored["rng"].random() == state["rng"].random()
    assert np.array_equal(restored["array"], np.arange(4.0))


def test_training_on_after_restore_matches_training_on_without_it():
    model = torch.nn.Linear(4, 2)
    state = make_state(model, 0)
    train_a_little(model, state)
    fresh = torch.nn.Linear(4, 2)
    fresh.load_state_dict(model.state_dict())
    restored, _ = through_file(model, state, make_state(fresh, 1), fresh)
    train_a_little(model, state)
    train_a_little(fresh, restored)
    assert torch.equal(model.weight, fresh.weight)
    assert state["stats"].history == restored["stats"].history


def test_the_old_mistake_rebuilding_a_namedtuple_from_a_generator_is_gone():
    model = torch.nn.Linear(1, 1)
    restored, _ = through_file(model, {"hp": Point(1.0, 2.0)}, {"hp": Point(0.0, 0.0)})
    assert restored["hp"] == Point(1.0, 2.0)


def test_without_a_live_counterpart_objects_are_rebuilt_from_their_class():
    model = torch.nn.Linear(1, 1)
    restored, _ = through_file(model, {"stats": Stats(5, [1.0]), "hp": Point(3, 4)}, None)
    assert restored == {"stats": Stats(5, [1.0]), "hp": Point(3, 4)}


def test_a_value_that_cannot_be_pickled_is_named_and_the_rest_is_kept():
    model = torch.nn.Linear(1, 1)
    state = {"schedule": lambda step: 0.1, "lock": threading.Lock(), "steps": 7,
             "inner": [Stats(2)]}
    live = {"schedule": "live schedule", "lock": "live lock", "steps": 0, "inner": [None]}
    restored, left_out = through_file(model, state, live)
    paths = [path for path, _ in left_out]
    assert paths == ["optimizer_state['schedule']", "optimizer_state['lock']"]
    assert all("cannot be pickled" in why for _, why in left_out)
    assert restored["schedule"] == "live schedule" and restored["lock"] == "live lock"
    assert restored["steps"] == 7 and restored["inner"] == [Stats(2)]


def test_cycles_are_kept():
    model = torch.nn.Linear(1, 1)
    a = Stats(1)
    a.history.append(a)
    restored, _ = through_file(model, {"a": a}, None)
    assert restored["a"].history[0] is restored["a"]


def test_a_state_dict_object_missing_from_the_live_state_is_one_clear_error():
    model = torch.nn.Linear(1, 1)
    state = {"optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}
    with pytest.raises(checkpoint_state.CheckpointError,
                       match=r"optimizer_state\['optimizer'\]: saved through state_dict\(\)"):
        through_file(model, state, {"optimizer": None})


def test_a_parameter_the_model_no_longer_has_is_one_clear_error():
    model = torch.nn.Linear(1, 1)
    encoded, _ = checkpoint_state.encode({"w": model.weight}, {id(model.weight): "weight"},
                                         _is_array)
    with pytest.raises(checkpoint_state.CheckpointError, match="parameter 'weight'"):
        checkpoint_state.restore({"w": None}, encoded, {"other": model.bias})
