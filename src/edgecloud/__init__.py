"""edgecloud: an edge cloud platform for telecom network functions (VNFs as VMs).

The package is layered (see docs/architecture.md and the import-linter contracts in
pyproject.toml): cli -> client -> REST api -> services -> store; the agent drives the
hypervisor and vSwitch through drivers; the gateway joins agents and controller over one
mutual-TLS channel whose messages are defined in protocol.
"""

__version__ = "0.3.0"  # the release; pyproject.toml says the same (tests/unit/test_release.py)
