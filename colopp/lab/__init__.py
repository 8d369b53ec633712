"""The lab network: namespaces that model a client, host A, host B and their switch.

:mod:`colopp.lab.plan` says what the lab is (pure data); :mod:`colopp.lab.lab` builds and
removes it through :mod:`colopp.lab.netlink` (pyroute2). Used by the demo and the
integration tests.
"""

from colopp.lab.lab import Lab, LabState, cleanup_leftovers
from colopp.lab.plan import (
    DEFAULT_PREFIX,
    LAB_RANGE,
    Cable,
    LabPlan,
    Network,
    Node,
    TapPlan,
    netns_argv,
    ns_path,
    plan_lab,
)

__all__ = [
    "DEFAULT_PREFIX",
    "LAB_RANGE",
    "Cable",
    "Lab",
    "LabPlan",
    "LabState",
    "Network",
    "Node",
    "TapPlan",
    "cleanup_leftovers",
    "netns_argv",
    "ns_path",
    "plan_lab",
]
