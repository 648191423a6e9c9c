"""``benchmarks.kfac_step_time`` (a GPU measurement) runs end to end on a CPU at a tiny
batch: generated batches of the full-size shapes go through all three submissions."""
import numpy as np
import pytest

from benchmarks import kfac_step_time
from workloads import registry


def test_generated_batches_have_the_full_size_shapes():
    vit = registry.get_workload("imagenet_vit")
    batch = kfac_step_time.HOST_BATCHES["imagenet_vit"](vit, 3, np.random.default_rng(0))
    assert batch["inputs"].shape == (3, 224, 224, 3) and batch["inputs"].dtype == np.uint8
    assert batch["targets"].max() < 1000
    model_batch = vit._model_batch(batch, True, np.random.default_rng(0))
    assert tuple(model_batch["inputs"].shape) == (3, 3, 224, 224)


def test_an_unknown_workload_is_one_clear_error(capsys):
    with pytest.raises(SystemExit):
        kfac_step_time.main(["--workloads", "ogbg", "--no_save"])
    assert "--workloads: no generated batch for ['ogbg']" in capsys.readouterr().err


@pytest.mark.slow
def test_wrn_16_4_steps_for_every_submission(capsys):
    kfac_step_time.main(["--workloads", "cifar_wrn", "--batch", "2", "--steps", "1",
                         "--warmup", "1", "--no_save"])
    out = capsys.readouterr().out
    assert out.startswith("cifar_wrn on cpu: nadamw ")
    assert "kfac_reduce" in out and "kfac_expand" in out and "expand / reduce" in out
