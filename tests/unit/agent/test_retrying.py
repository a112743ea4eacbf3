"""The agent's periodic resync after a nack (fake drivers): ``Applier.retry`` returns the
version an ``apply`` could not finish once the node matches it, for the agent to ack (which
clears the host's apply-failed alarm); nothing while errors remain, nothing after."""

from __future__ import annotations

from pathlib import Path

from tests.unit.agent.test_migrating_instances import _node, _spec

from edgecloud.drivers.compute.fake import FakeComputeDriver


async def test_retry_completes_a_nacked_version_once(tmp_path: Path) -> None:
    node = _node(tmp_path, "h1")
    assert isinstance(node.compute, FakeComputeDriver)
    node.compute.fail_next("start", "no memory", times=2)
    assert await node.apply(_spec(4)) != []  # nacked
    assert node.applied_version == 0
    assert await node.retry() is None  # still failing
    assert await node.retry() == 4  # applied at last
    assert node.applied_version == 4
    assert await node.retry() is None  # acked once
    assert await node.apply(_spec(5)) == [] and node.applied_version == 5
    assert await node.retry() is None  # an applied version is not acked again


async def test_retry_after_a_successful_apply_reports_nothing(tmp_path: Path) -> None:
    node = _node(tmp_path, "h1")
    assert await node.apply(_spec(1)) == []
    assert await node.retry() is None
