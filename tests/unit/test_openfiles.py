"""openfiles.raise_limit, in a child process (the limit is the process's own)."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import resource
from edgecloud import openfiles
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
now = openfiles.raise_limit()
print(now, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""


def test_soft_limit_raised_to_the_hard_limit() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    returned, soft, hard = (int(x) for x in out)
    assert soft == hard == returned


def test_already_at_the_hard_limit_is_left_alone() -> None:
    code = (
        "import resource; from edgecloud import openfiles; "
        "s, h = resource.getrlimit(resource.RLIMIT_NOFILE); "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (h, h)); "
        "print(openfiles.raise_limit() == h == resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True"
