"""ogbg_tiny end to end: the NAdamW baseline reaches the tiny tier's targets on CPU."""
import pytest

from tests.workloads.tiny_e2e import nadamw_reaches_the_targets


@pytest.mark.slow
def test_nadamw_reaches_the_ogbg_tiny_targets(tmp_path, tiny_data_dir):
    last = nadamw_reaches_the_targets(tmp_path, "ogbg_tiny", tiny_data_dir,
                                      "workloads/ogbg/tiny_targets.json")
    assert last["validation/num_examples"] == 1024
