"""Semi-active secondary (COLO++): the SVM's vCPU threads on fewer host CPUs, and capped.

- :mod:`colopp.vcpu.placement` (pure): parse ``query-cpus-fast``, plan the shrink, and the
  adaptive rule that relaxes the shrink when the secondary lags.
- :mod:`colopp.vcpu.cgroup` (I/O): a CPU-bandwidth cap on a set of vCPU threads
  (cgroup v2 ``cpu.max`` in a threaded cgroup, or cgroup v1 ``cpu.cfs_quota_us``).
- :mod:`colopp.vcpu.shrink` (I/O adapter): :func:`~colopp.vcpu.shrink.shrink` and
  :func:`~colopp.vcpu.shrink.restore` over a QMP monitor, ``sched_setaffinity`` and the cap.

Errors: :class:`VcpuError` (``OSError`` from affinity and cgroup files, converted once,
naming the operation), :class:`colopp.errors.ConfigError` (bad counts, quotas, names,
paths), :class:`colopp.errors.QmpError` (from the monitor, untouched)::

    ColoppError
     └── VcpuError     an affinity or cgroup operation failed (``operation`` names it)
"""

from __future__ import annotations

from colopp.errors import ColoppError


class VcpuError(ColoppError):
    """Placing or capping vCPU threads failed; ``operation`` names what was tried."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(f"{operation} failed: {message}")
        self.operation = operation
        self.message = message
