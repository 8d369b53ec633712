"""``HostAgent.status``: role, process, COLO and checkpoint state of this host's side."""

from __future__ import annotations

from colopp.agent.replies import StatusReply
from colopp.agent.side import Side
from colopp.agent.translation import SideTranslation
from colopp.agent.translation import describe as describe_translation
from colopp.errors import QmpError


async def side_status(
    host: str, side: Side | None, translation: SideTranslation | None
) -> StatusReply:
    """What runs here; QEMU's own COLO and migration state when it answers (else the
    QMP error, named)."""
    if side is None:
        return {"host": host, "role": None, "vm_alive": False}
    out: StatusReply = {
        "host": host,
        "role": side.spec.role.value,
        "backend": side.backend.value,
        "pid": side.process.pid,
        "vm_alive": side.process.alive(),
        "returncode": side.process.returncode,
        "failed_over": side.failed_over,
        "checkpoints": side.checkpoints.count,
        "last_checkpoint_at": side.checkpoints.last_at,
        "checkpoint_pauses_ms": side.checkpoints.pauses_ms[-32:],
        "colo_exit": side.checkpoints.colo_exit,
        "vcpu": side.vcpu.to_status() if side.vcpu is not None else None,
    }
    if translation is not None:
        out["translation"] = describe_translation(translation)
    if side.comparator is not None:
        out["comparator"] = side.comparator.status()
    if side.ingress is not None:
        out["ingress"] = side.ingress.status()
    if side.process.alive():
        try:
            out["colo"] = await side.monitor.execute("query-colo-status", timeout=2.0)
            migrate = await side.monitor.execute("query-migrate", timeout=2.0)
            out["migration"] = migrate.get("status") if isinstance(migrate, dict) else None
        except QmpError as exc:
            out["qmp_error"] = str(exc)
    return out
