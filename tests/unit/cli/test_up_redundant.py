"""`edgecloud up --redundant` refuses, in one sentence and before it writes anything, what
cannot give a replicated database: fewer than two nodes, a store URL of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecloud.cli.context import CliState
from edgecloud.cli.main import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--nodes", "1"],
            "error: --redundant needs --nodes 2 or more: the database runs on two nodes",
        ),
        (
            ["--nodes", "2", "--db", "postgresql+asyncpg://u:p@127.0.0.1/x"],
            "error: --redundant makes the site's own replicated store: drop --db",
        ),
        (
            ["--nodes", "2", "--api-listen", "127.0.0.1"],
            "error: --redundant puts each node's controller on the node's own address: drop "
            "--api-listen",
        ),
    ],
)
def test_up_redundant_refuses_what_cannot_be_replicated(
    tmp_path: Path, args: list[str], message: str
) -> None:
    argv = ["--config", str(tmp_path / "config.json"), "up", "--state-dir", str(tmp_path / "site")]
    argv += ["--driver", "fake", "--redundant", "--detach", *args]
    result = CliRunner().invoke(main, argv, obj=CliState(), prog_name="edgecloud")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [message]
    assert not (tmp_path / "site").exists() and not (tmp_path / "config.json").exists()
