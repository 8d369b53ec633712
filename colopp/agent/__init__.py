"""The per-host agent: owns the local QEMU, its QMP sockets and (on the primary) the
comparator; the controller reaches it over the network, never QMP itself."""
