"""The lab network: namespaces that model a client, host A, host B and their switch.

This package's names (``__all__``) are its public API: callers outside ``colopp.lab``
(the API, the demo, the tests) use these, never the modules' internals.

:mod:`colopp.lab.plan` says what the lab is (pure data); :mod:`colopp.lab.lab` builds and
removes it through :mod:`colopp.lab.netlink` (pyroute2). Used by the demo and the
integration tests.
"""

from colopp.lab.lab import LAB_LOCK, Lab, LabState, cleanup_leftovers, host_lock_fd
from colopp.lab.plan import (
    DEFAULT_PREFIX,
    LAB_HOSTS,
    LAB_RANGE,
    Cable,
    LabPlan,
    Network,
    Node,
    TapPlan,
    check_prefix,
    netns_argv,
    ns_path,
    plan_lab,
)

__all__ = [
    "DEFAULT_PREFIX",
    "LAB_HOSTS",
    "LAB_LOCK",
    "LAB_RANGE",
    "Cable",
    "Lab",
    "LabPlan",
    "LabState",
    "Network",
    "Node",
    "TapPlan",
    "check_prefix",
    "cleanup_leftovers",
    "host_lock_fd",
    "netns_argv",
    "ns_path",
    "plan_lab",
]
