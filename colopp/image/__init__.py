"""The guest image: a Debian cloud kernel, a busybox initramfs with kvd and iperf3,
and an ext4 data disk template.  ``colopp image build`` / :func:`build_image`."""

from colopp.image.builder import DEFAULT_CACHE_DIR, GuestImage, build_image
from colopp.image.cmdline import FAILED_MARKER, READY_MARKER, kernel_cmdline

__all__ = [
    "DEFAULT_CACHE_DIR",
    "FAILED_MARKER",
    "READY_MARKER",
    "GuestImage",
    "build_image",
    "kernel_cmdline",
]
