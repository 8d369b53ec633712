"""QEMU: the runtime colopp runs (provisioning, version checks) and argv rendering."""
