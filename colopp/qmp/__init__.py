"""A thin async QMP layer over qemu.qmp: every call has a timeout, errors name the command."""
