"""A pool of hosts for many protections (fleet mode): placement decisions, pure."""
