"""The one exception tree of colopp.

Every error colopp raises on purpose derives from :class:`ColoppError`. Foreign
errors (``qemu.qmp.ExecuteError``, ``OSError``, ``libvirt.libvirtError``,
``pyroute2`` netlink errors) are converted once, where they enter colopp, with
``raise ... from exc`` so the root cause stays attached::

    ColoppError
     ├── ConfigError            bad user input: names, ports, paths, options
     ├── QemuError              the QEMU binary or runtime
     │    ├── QemuNotFound      no such binary / runtime root not provisioned
     │    ├── QemuUnsupported   a known-broken QEMU version or a missing COLO feature
     │    └── QemuStartError    the process exited or never answered QMP
     ├── QmpError               a QMP command failed (names the command)
     │    └── QmpTimeout        a QMP command or event did not arrive in time
     ├── GuestError             the guest never booted / its service never answered
     ├── ImageError             building the guest image failed
     ├── LabError               network namespaces, bridges, taps
     ├── StateError             a lifecycle transition that is not allowed
     │    └── FenceError        a side's QEMU still ran after it was fenced
     ├── AgentError             talking to a host agent failed (remote error or transport)
     ├── ArbiterError           the right to serve (etcd leases, fencing tokens)
     │    ├── EtcdUnavailable   no etcd member answered in time (or answered nonsense)
     │    ├── NotAcquired       another side holds the right (the key exists)
     │    └── StaleToken        a command carried a fencing token older than one seen
 ├── LibvirtError           the libvirt backend (``libvirt.libvirtError`` converted)
 │    ├── LibvirtUnavailable    libvirtd cannot be reached (or libvirt-python is missing)
 │    └── DomainNotFound        no libvirt domain of that name
     └── FrameError             a malformed net-filter frame (counted and dropped)
"""

from __future__ import annotations


class ColoppError(Exception):
    """Root of every error colopp raises on purpose."""


class ConfigError(ColoppError):
    """Bad user input or configuration."""


class QemuError(ColoppError):
    """Something is wrong with the QEMU binary or its runtime."""


class QemuNotFound(QemuError):
    """The QEMU binary or the private runtime root is missing."""


class QemuUnsupported(QemuError):
    """A QEMU version known to be broken for COLO, or a missing COLO feature."""


class QemuStartError(QemuError):
    """A QEMU process exited early or never answered on QMP."""


#: The ``error_class`` of an error an HMP command printed (HMP has no error classes).
HMP_ERROR_CLASS = "HmpError"


class QmpError(ColoppError):
    """A QMP command failed.

    ``command`` names it; ``error_class`` is QEMU's class of the error (``GenericError``,
    ``DeviceNotFound``, ...; :data:`HMP_ERROR_CLASS` for HMP output), None when QEMU never
    answered (connection lost, timeout) or colopp itself judged the reply a failure.
    """

    def __init__(self, command: str, message: str, error_class: str | None = None) -> None:
        shown = f"{error_class}: {message}" if error_class else message
        super().__init__(f"QMP {command} failed: {shown}")
        self.command = command
        self.message = message
        self.error_class = error_class


class QmpTimeout(QmpError):
    """A QMP command or an awaited event did not arrive in time."""


class GuestError(ColoppError):
    """The guest did not boot or its service does not answer."""


class ImageError(ColoppError):
    """Building the guest image failed."""


class LabError(ColoppError):
    """Creating or removing lab namespaces, bridges or taps failed."""


class StateError(ColoppError):
    """A lifecycle transition that the state machine does not allow."""


class FenceError(StateError):
    """A side's QEMU still ran after it was killed: it may still serve."""


class AgentError(ColoppError):
    """A host agent reported an error, or could not be reached."""


class ArbiterError(ColoppError):
    """The right to serve a protection (etcd leases and fencing tokens)."""


class EtcdUnavailable(ArbiterError):
    """No etcd endpoint answered in time, or an answer made no sense."""


class NotAcquired(ArbiterError):
    """The right is held by another side: its key exists under another lease."""


class StaleToken(ArbiterError):
    """A command carried a fencing token older than the newest this agent has seen."""


class LibvirtError(ColoppError):
    """A libvirt call failed (the libvirtError is the cause)."""


class LibvirtUnavailable(LibvirtError):
    """libvirtd cannot be reached, or libvirt-python is not installed."""


class DomainNotFound(LibvirtError):
    """The named libvirt domain does not exist."""


class FrameError(ColoppError):
    """A net-filter frame is malformed (length, headers)."""
