import pytest

from orchestrator.routing import (
    RoutingError,
    Target,
    base_queues,
    normalize_arch,
    parse_queue,
    queue_for,
    worker_queues,
)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("x86_64", "x86_64"), ("amd64", "x86_64"), ("AMD64", "x86_64"), ("arm64", "aarch64"),
     (" aarch64 ", "aarch64"), ("x64", "x86_64")],
)
def test_arch_aliases_normalize_to_canonical_names(given, canonical):
    assert normalize_arch(given) == canonical


def test_unknown_arch_error_lists_the_accepted_names():
    with pytest.raises(RoutingError, match=r"unknown architecture 'sparc'.*x86_64, aarch64.*arm64=aarch64"):
        normalize_arch("sparc")


def test_queue_names_follow_arch_and_device_class():
    assert queue_for("arm64") == "compile.aarch64"
    assert queue_for("aarch64", "Orin") == "compile.aarch64.orin"
    assert queue_for("amd64", "sm90") == "compile.x86_64.sm90"
    assert Target.parse("x86_64", "any").queue == "compile.x86_64"


@pytest.mark.parametrize("bad", ["sm.90", "a b", "x" * 40, "-sm90", "sm90/"])
def test_device_class_that_would_break_a_queue_name_is_refused(bad):
    with pytest.raises(RoutingError, match="invalid device class"):
        queue_for("x86_64", bad)


def test_parse_queue_inverts_target_queue():
    for target in (Target("x86_64"), Target("aarch64", "orin"), Target("x86_64", "sm90")):
        assert parse_queue(target.queue) == target
    with pytest.raises(RoutingError, match="not a build queue"):
        parse_queue("celery")
    with pytest.raises(RoutingError, match="unknown architecture"):
        parse_queue("compile.riscv64")


def test_gpu_worker_serves_its_arch_queue_and_its_device_class_queue():
    assert worker_queues("aarch64", "orin") == ["compile.aarch64", "compile.aarch64.orin"]
    assert worker_queues("x86_64") == ["compile.x86_64"]
    assert base_queues() == ["compile.x86_64", "compile.aarch64"]


def test_target_label_reads_like_arch_slash_class():
    assert Target("aarch64", "orin").label == "aarch64/orin"
    assert Target("x86_64").label == "x86_64"
