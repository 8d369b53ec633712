"""Which writes disarm which reads: the scope of the pre-release read rule (pure).

``global`` (the default): one write anywhere disarms every read until the next checkpoint.

``key``: the operator declares the service's resources independent (an HTTP path such as
``/kv/{key}``, a Redis key). A write to a resource then disarms only the reads whose answer may
still be pending on a connection that asked for that resource, until the next checkpoint;
reads of untouched resources still leave early. What the operator promises, and what breaks if
it is false, is in :mod:`colopp.compare.prerelease`.

Each client connection keeps a *window*: the resources of the requests it sent whose answers
may still be pending. Requests are answered in order on a connection (HTTP/1.1, RESP), and a
client that sends a request after having received new bytes from the guest since its previous
request got (the whole of, if it does not pipeline) the answer to that previous request: the
window then restarts. A client that sends requests back to back without receiving anything in
between (pipelining) keeps growing its window, so every pending request's resource is
checked. A window that grows past :data:`MAX_WINDOW_KEYS` depends on every resource.
"""

from __future__ import annotations

SCOPES: tuple[str, ...] = ("global", "key")
#: Resources remembered per connection window; past this the window depends on everything.
MAX_WINDOW_KEYS = 64


class Window:
    """The resources a connection's pending answers may depend on."""

    __slots__ = ("dirty", "has_write", "keys", "overflow")

    def __init__(self) -> None:
        self.keys: set[bytes] = set()
        self.dirty = False  # a write to one of ``keys`` since the last checkpoint
        self.has_write = False  # a write request of its own is pending
        self.overflow = False


class WriteScope:
    """The writes seen since the last checkpoint and the windows they disarm."""

    def __init__(self, scope: str = "global") -> None:
        if scope not in SCOPES:
            raise ValueError(f"unknown pre-release scope {scope!r}")
        self.by_key = scope == "key"
        self.global_write = False
        self.written: set[bytes] = set()
        self._readers: dict[bytes, set[Window]] = {}
        self._overflowed: set[Window] = set()

    @property
    def write_seen(self) -> bool:
        """True when any write was seen since the last checkpoint."""
        return self.global_write or bool(self.written)

    def armed(self, window: Window) -> bool:
        """True when reads answered from ``window`` may leave early."""
        if self.global_write:
            return False
        if not self.by_key:
            return not self.written
        return not (window.dirty or window.has_write)

    def write(self, keys: tuple[bytes, ...] | None) -> None:
        """A write to ``keys`` (None: of unknown reach, or global scope: disarms everything)."""
        if keys is None or not self.by_key:
            self.global_write = True
            return
        for key in keys:
            self.written.add(key)
            for window in self._readers.get(key, ()):
                window.dirty = True
        for window in self._overflowed:
            window.dirty = True

    def add(self, window: Window, keys: tuple[bytes, ...], write: bool) -> None:
        """A request of the connection owning ``window`` touches ``keys``."""
        if not self.by_key:
            return
        if write:
            window.has_write = True
        if window.overflow:
            return
        for key in keys:
            if key in window.keys:
                continue
            if len(window.keys) >= MAX_WINDOW_KEYS:
                window.overflow = True
                self._overflowed.add(window)
                if self.written:
                    window.dirty = True
                return
            window.keys.add(key)
            self._readers.setdefault(key, set()).add(window)
            if key in self.written:
                window.dirty = True

    def reset(self, window: Window) -> None:
        """The connection's earlier requests are answered: forget their resources."""
        self.drop(window)
        window.dirty = window.has_write = window.overflow = False

    def drop(self, window: Window) -> None:
        """The connection is gone."""
        for key in window.keys:
            readers = self._readers.get(key)
            if readers is not None:
                readers.discard(window)
                if not readers:
                    del self._readers[key]
        window.keys.clear()
        self._overflowed.discard(window)

    def clear(self) -> None:
        """Forget every connection (the classifier's table was reset)."""
        self._readers.clear()
        self._overflowed.clear()

    def on_checkpoint(self) -> None:
        """The secondary is a copy of the primary: every pending answer is synchronized."""
        self.global_write = False
        if self.written:
            for key in self.written:
                for window in self._readers.get(key, ()):
                    window.dirty = False
            for window in self._overflowed:
                window.dirty = False
            self.written.clear()
