"""Several protections per agent (fleet mode): one side per protection, routed by name.

Every agent RPC may carry ``"protection": NAME``. Without it the call goes to the agent's
default side, exactly as in single-protection mode. With it, the call goes to that
protection's own :class:`~colopp.agent.host.HostAgent`, whose state directory is the
protection's run directory from the :class:`~colopp.agent.allocator.Allocator`, so its
QEMU sockets, pidfile, disks and comparator files never meet another protection's.

``allocate`` returns a protection's ports, tap name and run directory (the controller puts
them in the pair's configuration). ``release`` stops that protection's side and frees its
slot, removing its run directory. So one host can be primary for one VM and secondary for
another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from colopp.agent.allocator import Allocator
from colopp.errors import ConfigError

Handler = Callable[..., Awaitable[Any]]


class Side(Protocol):
    """What the router needs of a per-protection agent."""

    async def stop_vm(self) -> Any: ...


class ProtectionRouter:
    """Routes RPCs to per-protection agents made on demand by ``make``."""

    def __init__(
        self,
        default: Side,
        make: Callable[[Path], Side],
        methods_of: Callable[[Side], Mapping[str, Handler]],
        allocator: Allocator,
    ) -> None:
        self.default = default
        self._make = make
        self._methods_of = methods_of
        self.allocator = allocator
        self.sides: dict[str, Side] = {}

    def side(self, protection: str | None) -> Side:
        """The side serving ``protection`` (None: the default one).

        Raises:
            ConfigError: a protection that was never allocated here.
        """
        if protection is None:
            return self.default
        if protection not in self.sides:
            if protection not in self.allocator.table.taken:
                raise ConfigError(f"protection {protection!r} has no allocation on this host")
            run_dir = self.allocator.table.allocate(protection).run_dir
            self.sides[protection] = self._make(run_dir)
        return self.sides[protection]

    def methods(self, names: tuple[str, ...]) -> dict[str, Handler]:
        """The RPC table: each of ``names`` routed, plus ``allocate`` and ``release``."""

        def routed(name: str) -> Handler:
            async def call(protection: str | None = None, **params: Any) -> Any:
                if protection is not None and not isinstance(protection, str):
                    raise ConfigError("protection must be a string")
                return await self._methods_of(self.side(protection))[name](**params)

            return call

        table = {name: routed(name) for name in names}
        table["allocate"] = self.allocate
        table["release"] = self.release
        return table

    async def allocate(self, protection: str, slot: int | None = None) -> dict[str, Any]:
        """Reserve ``protection``'s slot here (idempotent); ``slot``: the fleet-wide one."""
        return self.allocator.allocate(protection, slot).to_dict()

    async def release(self, protection: str) -> dict[str, Any]:
        """Stop ``protection``'s side here and free its slot."""
        side = self.sides.pop(protection, None)
        if side is not None:
            await side.stop_vm()
        freed = self.allocator.release(protection)
        return {"released": freed is not None}

    async def stop_all(self) -> None:
        """Agent shutdown: stop every protection's side (slots stay, for a restart)."""
        for side in list(self.sides.values()):
            await side.stop_vm()
