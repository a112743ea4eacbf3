"""VNF images edgecloud can build itself, for tests, demos and host probes.

``building`` makes small direct-kernel-boot images (the host's Debian kernel plus a busybox
initramfs) that boot in seconds under TCG; ``guest_init`` holds the shell code those guests run.
``cloud_guest`` builds a real cloud-init guest (a Debian 12 qcow2 disk image with cloud-init
and the QEMU guest agent) from Debian's packages, for tests and demos of vendor-style VNFs.
The libvirt compute driver (drivers/compute/libvirt.py) boots them; nothing here talks to
libvirt.
"""

from edgecloud.images.building import ImageFiles, build_bump_in_the_wire, find_host_kernel

__all__ = ["ImageFiles", "build_bump_in_the_wire", "find_host_kernel"]
