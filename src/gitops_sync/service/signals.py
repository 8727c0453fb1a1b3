"""Turn SIGINT and SIGTERM into a request to stop after the cycle in flight.

Handlers are captured on entry and restored on exit, so the service behaves as a good guest when
embedded (and in tests). A second signal stops at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Final

log = logging.getLogger("gitops-sync")

HANDLED: Final = (signal.SIGINT, signal.SIGTERM)


class StopOnSignals:
    def __init__(self, *events: threading.Event) -> None:
        self._events = events
        self._previous: dict[int, object] = {}

    @property
    def stopping(self) -> bool:
        return self._events[0].is_set()

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            raise KeyboardInterrupt
        log.info("Received %s; stopping after the cycle in flight", signal.Signals(signum).name)
        for event in self._events:
            event.set()
