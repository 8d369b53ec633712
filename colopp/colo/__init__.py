"""The COLO pair: lifecycle state machine, QMP sequences for start and failover."""
