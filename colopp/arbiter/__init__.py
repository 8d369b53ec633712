"""Arbitration on etcd: who may serve a protection, and which controller replica leads.

The right to serve a protection is an etcd key attached to a lease that the serving side
renews itself. The key's revision is the **fencing token**: commands carry it and agents
refuse tokens older than one they have seen (:mod:`colopp.arbiter.token`). A side that
cannot renew fences itself (stops releasing output, then kills its QEMU) *before* the
lease can expire at etcd, with a margin computed from the TTL, the renew interval, the
fence budget and a documented clock-drift bound (:mod:`colopp.arbiter.timing`).

- ``timing.py``   the safety arithmetic (pure)
- ``right.py``    the holder's state machine: grant, renew answers, ticks -> fence actions (pure)
- ``token.py``    fencing tokens on the agent's side (pure)
- ``etcd.py``     etcd's v3 JSON gateway over httpx (the only I/O to etcd)
- ``keeper.py``   the asyncio loop that acquires, renews and fences through the above
- ``election.py`` controller leader election on the same primitives
"""
