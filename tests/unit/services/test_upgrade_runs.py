"""services/upgrade_runs.py's rules on in-memory rows (no store): the order of an upgrade's
steps, reboot-required hosts emptied before their restart and unlocked after, what stops it,
and how an abort rolls back."""

from __future__ import annotations

import datetime as dt

import pytest

from edgecloud.services import upgrade_runs as runs
from edgecloud.store.models import Host, Upgrade, UpgradeStep

T0 = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)
OLD, NEW = "0.2.0", "0.2.1"


def _host(name: str, release: str = OLD, **extra: object) -> Host:
    fields = {"state": "enabled", "availability": "online", "maintenance": None, **extra}
    return Host(id=f"id-{name}", name=name, release=release, **fields)


def _upgrade(state: str = "hosts", reboot: bool = False, hosts: int = 2) -> Upgrade:
    upgrade = Upgrade(to_release=NEW, from_release=OLD, state=state, reboot=reboot,
                      stop_on_alarm=False, max_parallel=1, updated_at=T0, created_at=T0)  # fmt: skip
    upgrade.steps = [
        UpgradeStep(
            kind="controller",
            target="vm:1",
            name="vm:1/a",
            batch=0,
            state="done",
            locked=False,
            updated_at=T0,
        ),
    ] + [
        UpgradeStep(
            kind="host",
            target=f"id-n{i}",
            name=f"n{i}",
            batch=i,
            state="pending",
            locked=False,
            updated_at=T0,
        )
        for i in range(hosts)
    ]
    return upgrade


def _step(upgrade: Upgrade, name: str) -> UpgradeStep:
    return next(st for st in upgrade.steps if st.name == name)


async def _forward(upgrade: Upgrade, hosts: list[Host], at: float = 1.0) -> runs._Work:
    work = runs._Work()
    now = T0 + dt.timedelta(seconds=at)
    await runs._hosts_forward(None, upgrade, {h.id: h for h in hosts}, now, work)  # type: ignore[arg-type]
    return work


async def test_hosts_stage_together_then_restart_one_batch_at_a_time() -> None:
    upgrade, hosts = _upgrade(), [_host("n0"), _host("n1")]
    work = await _forward(upgrade, hosts)
    assert [st.name for st in work.stage] == ["n0", "n1"] and not work.restart
    for st in work.stage:
        st.state = "staged"
    work = await _forward(upgrade, hosts)
    assert [st.name for st in work.restart] == ["n0"]  # batch 0 only
    assert _step(upgrade, "n0").state == "restarting"
    assert _step(upgrade, "n1").state == "staged"
    hosts[0].release = NEW  # its hello said the release
    work = await _forward(upgrade, hosts)
    assert _step(upgrade, "n0").state == "done" and [st.name for st in work.restart] == ["n1"]
    hosts[1].release = NEW
    await _forward(upgrade, hosts)
    assert upgrade.state == "activated"


async def test_a_reboot_empties_the_host_first_and_unlocks_it_after() -> None:
    upgrade, hosts = _upgrade(reboot=True, hosts=1), [_host("n0")]
    _step(upgrade, "n0").state = "staged"
    work = await _forward(upgrade, hosts)
    step = _step(upgrade, "n0")
    assert [st.name for st in work.lock] == ["n0"] and not work.restart
    assert (step.state, step.locked) == ("emptying", True)
    hosts[0].state = "locked"
    hosts[0].maintenance = {"status": "evacuating"}
    assert not (await _forward(upgrade, hosts)).restart  # its VNFs are still moving
    hosts[0].maintenance = {"status": "done"}
    work = await _forward(upgrade, hosts)
    assert [st.name for st in work.restart] == ["n0"] and step.state == "restarting"
    hosts[0].release = NEW
    work = await _forward(upgrade, hosts)
    assert [st.name for st in work.unlock] == ["n0"] and step.state == "done"


async def test_a_host_locked_before_the_upgrade_is_not_emptied_nor_unlocked() -> None:
    upgrade, hosts = _upgrade(reboot=True, hosts=1), [_host("n0", state="locked")]
    _step(upgrade, "n0").state = "staged"
    work = await _forward(upgrade, hosts)
    assert not work.lock and [st.name for st in work.restart] == ["n0"]
    hosts[0].release = NEW
    assert not (await _forward(upgrade, hosts)).unlock


@pytest.mark.parametrize(
    ("maintenance", "state", "why"),
    [
        (
            {"status": "failed", "error": "v1: no room"},
            "locked",
            "could not be emptied: v1: no room",
        ),
        ({"status": "cancelled"}, "enabled", "was unlocked while it was being emptied"),
    ],
)
async def test_a_host_that_is_not_emptied_stops_the_upgrade(
    maintenance: dict[str, str], state: str, why: str
) -> None:
    upgrade, hosts = _upgrade(reboot=True, hosts=1), [_host("n0", state=state)]
    _step(upgrade, "n0").state = "emptying"
    hosts[0].maintenance = maintenance
    await _forward(upgrade, hosts)
    assert upgrade.state == "failed" and why in (upgrade.error or "")
    assert _step(upgrade, "n0").state == "failed"


async def test_a_host_that_does_not_come_back_in_time_stops_the_upgrade() -> None:
    upgrade, hosts = _upgrade(hosts=1), [_host("n0")]
    _step(upgrade, "n0").state = "restarting"
    await _forward(upgrade, hosts, at=runs.RESTART_DEADLINE - 1)
    assert upgrade.state == "hosts"
    await _forward(upgrade, hosts, at=runs.RESTART_DEADLINE + 1)
    assert upgrade.state == "failed"
    assert "n0 did not come back at 0.2.1 within 90 s" in (upgrade.error or "")


async def test_an_offline_host_waits_then_stops_the_upgrade() -> None:
    upgrade, hosts = _upgrade(hosts=1), [_host("n0", availability="offline")]
    assert not (await _forward(upgrade, hosts)).stage  # not staged while offline
    assert upgrade.state == "hosts"
    await _forward(upgrade, hosts, at=runs.RESTART_DEADLINE + 1)
    assert upgrade.state == "failed" and "host n0 is offline" in (upgrade.error or "")


def test_controllers_are_done_when_their_process_runs_the_release() -> None:
    upgrade = _upgrade(state="controllers")
    ctl = _step(upgrade, "vm:1/a")
    ctl.state = "restarting"
    runs._controllers_forward(upgrade, {"vm:1": OLD}, T0)
    assert (ctl.state, upgrade.state) == ("restarting", "controllers")
    runs._controllers_forward(upgrade, {"vm:1": NEW}, T0)  # same host:pid, a new start
    assert (ctl.state, upgrade.state) == ("done", "hosts")


def test_an_abort_reverts_hosts_then_controllers() -> None:
    upgrade = _upgrade(state="aborting", hosts=2)
    for st in upgrade.steps:
        st.state = "done"
    _step(upgrade, "n1").locked = True
    hosts = {h.id: h for h in (_host("n0", NEW), _host("n1", NEW, state="locked"))}
    work = runs._Work()
    runs._backward(upgrade, hosts, {"vm:1": NEW}, T0, work)
    assert [st.name for st in work.revert] == ["n0", "n1"]
    hosts["id-n0"].release = hosts["id-n1"].release = OLD
    work = runs._Work()
    runs._backward(upgrade, hosts, {"vm:1": NEW}, T0, work)
    assert [st.name for st in work.unlock] == ["n1"]  # the upgrade's lock, lifted
    assert _step(upgrade, "vm:1/a").state == "done"  # its controller goes back itself
    runs._backward(upgrade, hosts, {"vm:1": OLD}, T0, runs._Work())
    assert upgrade.state == "aborting"  # no host said hello since its controller restarted
    for host in hosts.values():
        host.last_seen_at = T0 + dt.timedelta(seconds=2)
    later = T0 + dt.timedelta(seconds=3)
    runs._backward(upgrade, hosts, {"vm:1": OLD}, later, runs._Work())
    assert upgrade.state == "aborted" and upgrade.finished_at == later


def test_starting_a_failed_upgrade_again_retries_its_failed_steps() -> None:
    upgrade = _upgrade(state="failed")
    _step(upgrade, "n0").state, _step(upgrade, "n0").error = "failed", "staging failed: disk"
    upgrade.error = "host n0: staging failed: disk"
    runs._resume(upgrade)
    assert (upgrade.state, upgrade.error) == ("hosts", None)
    assert (_step(upgrade, "n0").state, _step(upgrade, "n0").error) == ("pending", None)


async def test_a_host_enrolled_after_the_start_joins_the_upgrade_last() -> None:
    upgrade = _upgrade(hosts=2)  # n0 and n1, batches 0 and 1
    upgrade.max_parallel = 2
    late = [_host("n2"), _host("m9"), _host("n3", release=NEW)]  # n3 runs it already
    work = await _forward(upgrade, [_host("n0"), _host("n1"), *late])
    joined = [(st.name, st.batch) for st in upgrade.steps if st.name in ("m9", "n2", "n3")]
    assert joined == [("m9", 2), ("n2", 2), ("n3", 3)]  # after the last batch, two at a time
    assert _step(upgrade, "n3").state == "done"  # at the release already: nothing to do
    assert {st.name for st in work.stage} == {"n0", "n1", "m9", "n2"}  # staged ahead, as all
    await _forward(upgrade, [_host("n0"), _host("n1"), *late], at=2.0)
    assert len(upgrade.steps) == 6, "a newcomer was added twice"
