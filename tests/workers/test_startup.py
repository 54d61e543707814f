import pytest

from orchestrator.services import InvalidRequestError
from workers.startup import check_fork_safe


def test_prefork_pool_is_refused_once_cuda_is_initialized_in_the_parent(monkeypatch):
    import torch

    check_fork_safe("prefork")  # nothing initialized CUDA in this test process
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(InvalidRequestError, match="--pool solo or --pool threads"):
        check_fork_safe("prefork")
    check_fork_safe("solo")
    check_fork_safe("threads")


def test_planning_a_worker_makes_cuda_availability_checks_fork_safe(monkeypatch):
    import os

    from workers.startup import plan_worker

    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "unset-after-the-test")
    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK")
    plan_worker(pool="solo")
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
