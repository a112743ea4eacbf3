"""`edgecloud stack ...`: create, update, inspect and delete stacks from HOT templates.

Commands call the client SDK (edgecloud.client.Client, via cli/context.py) and print with
cli/output.py; registered on `edgecloud` by cli/main.py through `register`. The template
file is read here and sent as text; the controller parses and checks it. Parameters come
from --parameters-file (a YAML or JSON mapping) and then -P KEY=VALUE, which wins; values
stay strings and the controller converts them to the template's parameter types.
``-e FILE`` (repeatable) names Heat environment files; the files that the template, its
nested templates and the environments refer to (nested template types, resource_registry
targets, get_file) are read here, relative to the file that names them, and sent in
``files`` keyed by their path relative to the template's folder, as python-heatclient does.
cli/chains.py uses the same template and parameter options for its services.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from edgecloud.cli.context import pass_client
from edgecloud.cli.output import emit, json_option
from edgecloud.client import Client
from edgecloud.errors import InvalidInput
from edgecloud.templates.environment import file_key
from edgecloud.templates.loading import is_template_name

MAX_FILES = 100

F = TypeVar("F", bound=Callable[..., Any])
COLUMNS = ("name", "status", "status_reason", "updated_at")
RESOURCE_COLUMNS = ("name", "type", "state", "physical_id")


class ParameterSpec(click.ParamType):
    """KEY=VALUE -> (key, value); the value may be empty or contain '='."""

    name = "KEY=VALUE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, equals, text = str(value).partition("=")
        if not equals or not key.strip():
            self.fail(f"'{value}' is not KEY=VALUE", param, ctx)
        return key.strip(), text


def read_template(path: Path) -> str:
    """The template file's text; InvalidInput (one sentence) when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"template file {path} does not exist", "template") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInput(f"cannot read template file {path} ({reason})", "template") from None
    if not text.strip():
        raise InvalidInput(f"template file {path} is empty", "template")
    return text


def read_parameters(path: Path | None, pairs: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """The mapping in `path` (YAML or JSON), then the -P pairs over it."""
    parameters: dict[str, Any] = {}
    if path is not None:
        parameters.update(_parameters_file(path))
    parameters.update(pairs)
    return parameters


def _parameters_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"parameters file {path} does not exist", "parameters") from None
    except OSError as exc:
        raise InvalidInput(
            f"cannot read parameters file {path} ({exc.strerror or exc})", "parameters"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(
            f"parameters file {path} is not valid YAML or JSON{where}", "parameters"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise InvalidInput(f"parameters file {path} must hold a mapping of names to values")
    return data


def collect_files(
    template: Path, environments: tuple[Path, ...]
) -> tuple[dict[str, str], list[str]]:
    """``(files, environment_files)`` for a stack request: every environment and every file
    the template, its nested templates and the environments refer to, by key."""
    root = template.resolve().parent
    files: dict[str, str] = {}
    env_keys = []
    pending: list[tuple[str, Path, str]] = [("", template, "template")]
    for path in environments:
        key = posixpath.normpath(os.path.relpath(path.resolve(), root).replace(os.sep, "/"))
        env_keys.append(key)
        pending.append((key, path, "environment"))
    while pending:
        key, path, kind = pending.pop()
        if key in files:
            continue
        text = read_template(path) if kind != "file" else _read_file(path)
        if key:
            files[key] = text
        if len(files) > MAX_FILES:
            raise InvalidInput(f"the template refers to more than {MAX_FILES} files", "files")
        if kind == "file":
            continue
        for name, what in _references(text, path, kind):
            pending.append((file_key(key, name), path.parent / name, what))
    return files, env_keys


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"cannot read {path}, which the template refers to ({exc.strerror or exc})", "files"
        ) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}, which the template refers to, is not UTF-8 text") from None


def _references(text: str, path: Path, kind: str) -> list[tuple[str, str]]:
    """Files named in a template (nested types, get_file) or an environment (registry)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []  # the controller reports the YAML error with its line
    if not isinstance(data, dict):
        return []
    if kind == "environment":
        registry = data.get("resource_registry") or {}
        targets = registry.values() if isinstance(registry, dict) else []
        return [(t, "template") for t in targets if isinstance(t, str) and is_template_name(t)]
    found: list[tuple[str, str]] = []
    _walk(data.get("resources"), found)
    _walk(data.get("outputs"), found)
    return found


def _walk(value: object, found: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "type" and isinstance(item, str) and is_template_name(item):
                found.append((item, "template"))
            elif key == "get_file" and isinstance(item, str):
                found.append((item, "file"))
            else:
                _walk(item, found)
    elif isinstance(value, list):
        for item in value:
            _walk(item, found)


def environment_option(command: F) -> F:
    """-e/--environment FILE (repeatable): Heat environment files, applied in order."""
    return click.option(
        "-e",
        "--environment",
        "environments",
        type=click.Path(dir_okay=False, path_type=Path),
        multiple=True,
        help="A Heat environment file (parameters, parameter_defaults, resource_registry); "
        "repeat for more, later ones win.",
    )(command)


def template_option(command: F) -> F:
    """-t/--template FILE, required; the command receives it as `template` (a Path)."""
    return click.option(
        "-t",
        "--template",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        help="HOT template file (YAML).",
    )(command)


def parameter_options(command: F) -> F:
    """-P KEY=VALUE (repeatable) and --parameters-file FILE: `parameters`, `parameters_file`."""
    command = click.option(
        "--parameters-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="A YAML or JSON mapping of template parameters (-P wins over it).",
    )(command)
    return click.option(
        "-P",
        "--parameter",
        "parameters",
        type=ParameterSpec(),
        multiple=True,
        help="A template parameter; repeat for more.",
    )(command)


def show_stack(stack: dict[str, Any], as_json: bool) -> None:
    """The stack as a field table, its resources as a sub-table in a fixed column order."""
    if not as_json:
        resources = stack.get("resources") or []
        stack = {
            **stack,
            "resources": [{key: r.get(key) for key in RESOURCE_COLUMNS} for r in resources],
        }
    emit(stack, as_json)


@click.group()
def stack() -> None:
    """Stacks: VNFs, networks and their wiring from HOT templates."""


@stack.command()
@click.argument("name")
@template_option
@environment_option
@parameter_options
@json_option
@pass_client
def create(
    client: Client,
    name: str,
    template: Path,
    environments: tuple[Path, ...],
    parameters: tuple[tuple[str, str], ...],
    parameters_file: Path | None,
    as_json: bool,
) -> None:
    """Create stack NAME from a template (and environment files)."""
    text = read_template(template)
    files, env_keys = collect_files(template, environments)
    values = read_parameters(parameters_file, parameters)
    show_stack(client.create_stack(name, text, values, files, env_keys), as_json)


@stack.command()
@click.argument("name")
@template_option
@environment_option
@parameter_options
@json_option
@pass_client
def update(
    client: Client,
    name: str,
    template: Path,
    environments: tuple[Path, ...],
    parameters: tuple[tuple[str, str], ...],
    parameters_file: Path | None,
    as_json: bool,
) -> None:
    """Update stack NAME to a new template and parameters (those not given are dropped)."""
    text = read_template(template)
    files, env_keys = collect_files(template, environments)
    values = read_parameters(parameters_file, parameters)
    show_stack(client.update_stack(name, text, values, files, env_keys), as_json)


@stack.command("list")
@json_option
@pass_client
def list_(client: Client, as_json: bool) -> None:
    """List stacks."""
    emit(client.list_stacks(), as_json, COLUMNS)


@stack.command()
@click.argument("name")
@json_option
@pass_client
def show(client: Client, name: str, as_json: bool) -> None:
    """Show stack NAME with its resources and outputs."""
    show_stack(client.get_stack(name), as_json)


@stack.command()
@click.argument("name")
@click.option("--wait/--no-wait", default=False, help="Wait until it is gone.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300,
    metavar="SECONDS",
    show_default=True,
    help="Seconds --wait waits.",
)
@pass_client
def delete(client: Client, name: str, wait: bool, timeout: float) -> None:
    """Delete stack NAME and the resources it created."""
    client.delete_stack(name)
    if wait:
        client.wait_for_stack_gone(name, timeout)
        click.echo(f"stack {name} deleted")
    else:
        click.echo(f"stack {name} is being deleted")


def register(cli: click.Group) -> None:
    cli.add_command(stack)
