"""Drivers: small interfaces with capability flags, between the agent and a node's hypervisor
and vSwitch. Drivers know nothing of each other, the controller or the store (import-linter
enforces it); the agent wires one compute and one network driver together.
"""
