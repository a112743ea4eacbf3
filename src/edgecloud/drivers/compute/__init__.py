"""Compute drivers: base interface, fake (in memory) and libvirt."""
