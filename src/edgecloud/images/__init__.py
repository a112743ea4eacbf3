"""VNF images edgecloud can build itself, for tests, demos and host probes.

``building`` makes small direct-kernel-boot images (the host's Debian kernel plus a busybox
initramfs) that boot in seconds under TCG; ``guest_init`` holds the shell code those guests run.
The libvirt compute driver (drivers/compute/libvirt.py) boots them; nothing here talks to
libvirt.
"""

from edgecloud.images.building import ImageFiles, build_bump_in_the_wire, find_host_kernel

__all__ = ["ImageFiles", "build_bump_in_the_wire", "find_host_kernel"]
