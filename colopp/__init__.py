"""colopp: non-stop service for QEMU/KVM virtual machines (COLO with a userspace comparator)."""

__version__ = "0.1.0"
