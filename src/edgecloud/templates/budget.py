"""The time and size budget of one template operation (parse, expand, evaluate).

Template input comes from API clients: it must not hold a controller core or its memory.
``within_budget(seconds)`` sets a deadline for the calling context (a contextvar, so it also
holds in the worker thread services/stacks.py runs the engine in: ``asyncio.to_thread`` copies
the context); ``tick()`` is called by the loops of templates/parsing.py,
templates/expanding.py and templates/resolving.py and raises TemplateError once the deadline
has passed. ``capped`` bounds every value an intrinsic function makes. Regular expressions
from templates run through ``match_pattern`` (the ``regex`` package with a timeout: a
catastrophic pattern such as ``(a+)+$`` is stopped, and ``regex`` releases the GIL while it
matches, so the event loop is not starved even while the worker thread matches).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

import regex

from edgecloud.errors import TemplateError

DEFAULT_SECONDS = 5.0
MAX_TEXT = 1_000_000  # characters of one string value (a template, a user_data, a joined list)
MAX_ITEMS = 10_000  # items of one list or map a function makes
PATTERN_SECONDS = 0.1  # one allowed_pattern / property pattern match

PatternError = regex.error

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "template_deadline", default=None
)
_budget: contextvars.ContextVar[float] = contextvars.ContextVar("template_budget", default=0.0)


@contextmanager
def within_budget(seconds: float = DEFAULT_SECONDS) -> Iterator[None]:
    """Everything the engine does inside this block must finish within ``seconds``."""
    token = _deadline.set(time.monotonic() + seconds)
    budget = _budget.set(seconds)
    try:
        yield
    finally:
        _deadline.reset(token)
        _budget.reset(budget)


def tick() -> None:
    """TemplateError when the current budget's deadline has passed (no budget: no limit)."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise TemplateError(
            f"the template took longer than its budget of {_budget.get():g} s to process "
            "(make it smaller or simpler)"
        )


def capped(value: object, what: str) -> object:
    """``value`` itself when within the size limits; TemplateError naming ``what`` otherwise."""
    if isinstance(value, str) and len(value) > MAX_TEXT:
        raise TemplateError(f"{what} makes a string of {len(value)} characters (max {MAX_TEXT})")
    if isinstance(value, list | dict) and len(value) > MAX_ITEMS:
        raise TemplateError(f"{what} makes {len(value)} items (max {MAX_ITEMS})")
    return value


def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """The compiled pattern; ``regex.error`` when it is not a valid regular expression."""
    return regex.compile(pattern)


def match_pattern(pattern: str, value: str) -> bool:
    """Whether the whole of ``value`` matches ``pattern``; TemplateError when matching takes
    longer than PATTERN_SECONDS (a pattern that backtracks catastrophically)."""
    tick()
    try:
        return regex.fullmatch(pattern, value, timeout=PATTERN_SECONDS, concurrent=True) is not None
    except TimeoutError:
        raise TemplateError(
            f"the pattern {pattern!r} took longer than {PATTERN_SECONDS:g} s to match "
            "(it backtracks catastrophically); simplify it"
        ) from None
