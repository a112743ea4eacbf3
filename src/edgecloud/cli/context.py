"""How CLI commands get their Client: the state on the click context, and `pass_client`.

cli/main.py puts a `CliState` on the root context (ctx.obj) with the global options. A
command that talks to the controller is decorated with `@pass_client` and receives a
`edgecloud.client.Client` as its first argument; the client is built on first use by
`state.client_factory(state.config_path)` and closed when the command ends. Tests inject a
Client over httpx.MockTransport with `CliRunner().invoke(main, args, obj=CliState(
client_factory=lambda path: client))`. Commands that only need the config path (cli/site.py
writes it) use `get_state(ctx).resolved_config_path()`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import click

from edgecloud.client import Client, default_config_path, load_config

P = ParamSpec("P")
R = TypeVar("R")
ClientFactory = Callable[[Path | None], Client]


def connect(config_path: Path | None) -> Client:
    """The real factory: read the config (default location when None) and build a Client."""
    return Client(load_config(config_path))


@dataclass
class CliState:
    """The global options and the lazily built client of one CLI invocation."""

    config_path: Path | None = None
    debug: bool = False
    client_factory: ClientFactory = connect
    client: Client | None = field(default=None, repr=False)

    def resolved_config_path(self) -> Path:
        return self.config_path or default_config_path()


def get_state(ctx: click.Context) -> CliState:
    state = ctx.find_object(CliState)
    if state is None:  # a command invoked without the `main` group, e.g. in a test
        state = ctx.find_root().ensure_object(CliState)
    return state


def get_client(ctx: click.Context) -> Client:
    """The invocation's Client, built on first use and closed with the root context."""
    state = get_state(ctx)
    if state.client is None:
        state.client = state.client_factory(state.config_path)
        ctx.find_root().call_on_close(state.client.close)
    return state.client


def pass_client(command: Callable[Concatenate[Client, P], R]) -> Callable[P, R]:
    """Decorator: call the command with the invocation's Client as first argument."""

    @functools.wraps(command)
    def with_client(*args: P.args, **kwargs: P.kwargs) -> R:
        return command(get_client(click.get_current_context()), *args, **kwargs)

    return with_client
