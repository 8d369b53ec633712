"""The primary host's mirror process (``python -m colopp.mirror``): QEMU's ``filter-mirror``
stream from a unix socket to the secondary host over TCP, in batches of whole frames
(``frames.py``, pure)."""
