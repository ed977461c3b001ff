"""Progress lines of long steps (store build, test-set prediction, timeline drawing) on the
``avloc.progress`` logger, which :func:`models.run.pipeline.log_to_file` sends to both the rule's log and
the console Snakemake prints to. A leaf module (logging only), so any step can import it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

PROGRESS_LOGGER = "avloc.progress"


class Heartbeat:
    """``what: i / n (s, ETA)`` lines on the ``avloc.progress`` logger (the rule's log and the console, see
    :func:`log_to_file`) at most every ``every_s`` seconds and once at the end: a full-size store build or
    evaluation runs for minutes, and silence looks hung."""

    def __init__(self, what: str, total: int, every_s: float = 30.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.what, self.total, self.every_s, self.done = what, int(total), float(every_s), 0
        self._clock = clock
        self.t0 = self.last = self._clock()
        logging.getLogger(PROGRESS_LOGGER).info("%s: 0 / %d", what, self.total)

    def tick(self, n: int = 1) -> None:
        self.done += n
        now = self._clock()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            logging.getLogger(PROGRESS_LOGGER).info("%s: %d / %d, %.0f s in, ETA %.0f s", self.what, self.done,
                                                     self.total, now - self.t0, (self.total - self.done) / rate)

    def finish(self) -> None:
        logging.getLogger(PROGRESS_LOGGER).info("%s: %d / %d in %.0f s", self.what, self.done, self.total,
                                                 self._clock() - self.t0)
