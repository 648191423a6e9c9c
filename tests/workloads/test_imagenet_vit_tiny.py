"""imagenet_vit_tiny end to end: the NAdamW baseline reaches the tiny tier's targets on CPU
(batch 1024, the imagenet_vit baseline size: ~0.6 s a step on two idle cores)."""
import pytest

from tests.workloads.tiny_e2e import nadamw_reaches_the_targets


@pytest.mark.slow
def test_nadamw_reaches_the_imagenet_vit_tiny_targets(tmp_path, tiny_data_dir):
    last = nadamw_reaches_the_targets(tmp_path, "imagenet_vit_tiny", tiny_data_dir,
                                      "workloads/imagenet_vit/tiny_targets.json")
    assert last["validation/num_examples"] == 2048
