"""``python -m edgecloud``: the same as the ``edgecloud`` command."""

from edgecloud.cli.main import main

main()
