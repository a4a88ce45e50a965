"""How many bulk requests may be in flight: a limit that learns the cluster's, in the manner of
Vector's adaptive request concurrency (additive increase, multiplicative decrease on round-trip
times and push-back).

The shipper's loop owns one :class:`AdaptiveConcurrency` and feeds it values: each request's
:class:`~.bulk.Attempt` as it comes back, and, after each dispatch, how many requests are in
flight.  Time is cut into *windows* about one round-trip time long; at the end of each:

* **push-back** (a 429, a 503, a request that timed out) in the window, or a mean round-trip
  time above the baseline by more than *deviation_scale* standard deviations: the limit is cut
  to *decrease* of itself (at least 1), at most once per window, or, to push-back while it still
  doubles, to half (the doubling overshot; the limit before it drew none: TCP halves its window
  on a loss in slow start); push-back to requests sent before a cut is the overload that cut
  answered, not more of it.  The requests refused go again under the limit (the shipper's loop
  holds them back, see :mod:`.shipper`), not each on its own.  After push-back it is then held
  for *hold_windows* windows, twice as long each time push-back comes back soon after a hold (up
  to *max_hold_windows*): a cluster that just said "too much" is not asked for more at once, so
  at a hard limit only a few requests in a hundred are refused, where growing by one every
  window would be refused every few;
* otherwise, when the limit was reached in the window (more work waited than it allowed) and
  the round-trip time stayed near the baseline: the limit grows by one, up to *maximum*;
  until the first cut, it doubles instead (TCP's slow start): a cluster 500 ms away gets 64
  requests in flight after 3 windows (from 8), where one more a window would give it 11.  The
  first window ends with the first answer (it began with the first request).

"Near the baseline" is within *deviation_scale* standard deviations, and never less than
*min_rise* of it: the first windows have no variance to speak of.

The baseline is an exponentially weighted mean (and variance) of the windows' round-trip
times, so a cluster that is slower for good becomes the new normal instead of holding the
limit down for ever.  A request that got no answer at all (refused, reset) says nothing of
the cluster's capacity: it is neither a sample nor push-back (the sender backs off).

It starts at *initial* requests (the shipper starts at :data:`DEFAULT_INITIAL`, as TCP starts
with a window of several segments: one request at a time would spend the first round trips to a
distant cluster on almost nothing; a cluster that cannot take them answers 429 and is sent fewer
at once).  Beyond that the limit is earned, never assumed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (a leaf at run time: the command's defaults are read from here)
    from .bulk import Attempt

__all__ = ["DEFAULT_INITIAL", "DEFAULT_MAXIMUM", "AdaptiveConcurrency"]

#: ``--max-in-flight``'s default.  By Little's law the requests a cluster needs in flight are the
#: rate times the round trip: one core reads about 700,000 of Amebo's records a second, so a
#: cluster 0.5 s away takes about 35 requests of 10,000 (``--batch-size``) to keep up, one 0.9 s
#: away about 63.  The limit only grows that far where round trips are long and flat and work
#: waits; what is held is bounded by it too (the shipper's reading waits at that many batches
#: held).  (128 requests of 5,000 held the same documents: as many threads for half the work
#: each, and a round trip more to reach them.)  Vector's own ceiling is 200.
DEFAULT_MAXIMUM = 64

#: ``--initial-in-flight``'s default: where the learned limit starts, before any answer. From 8, a
#: cluster 0.5 s away gets 64 requests in flight after 3 round trips (from 4, after 4): a backlog
#: of 1,000,000 records there goes in four rounds of requests from 8, five from 4.  Eight
#: requests of 10,000 of Amebo's records are about 38 MB of operations (2.6 MB gzipped on the
#: wire), where Elasticsearch's indexing pressure allows a tenth of each node's heap; a cluster
#: that cannot take them answers 429 and is sent fewer. Shippers that start together against one
#: cluster (a DaemonSet after a rollout) start lower: the packaged ConfigMap says 4.
DEFAULT_INITIAL = 8


class AdaptiveConcurrency:
    """The concurrency limit of one run (see the module docstring).  Used by one thread."""

    def __init__(
        self,
        maximum: int,
        *,
        initial: int = 1,
        decrease: float = 0.9,
        alpha: float = 0.4,
        deviation_scale: float = 2.5,
        hold_windows: int = 10,
        max_hold_windows: int = 160,
        min_rise: float = 0.25,
        min_window: float = 0.01,
    ) -> None:
        self.maximum = max(1, maximum)
        self._limit = float(max(1, min(initial, self.maximum)))
        self.decrease = decrease
        self.alpha = alpha
        self.deviation_scale = deviation_scale
        self.hold_windows = hold_windows
        self.max_hold_windows = max_hold_windows
        self._hold_length = hold_windows
        self._since_pressure = 0  # windows
        self.min_rise = min_rise
        self.min_window = min_window
        self.slow_start = True
        self.baseline: float | None = None  # seconds
        self.variance = 0.0
        self.increases = 0
        self.decreases = 0
        self._hold = 0
        self._window_end: float | None = None
        self._sum = 0.0
        self._samples = 0
        self._pressure = False
        self._reached = False
        self._cut_at: float | None = None  # when push-back last cut the limit

    @property
    def limit(self) -> int:
        return max(1, int(self._limit))

    def dispatched(self, in_flight: int) -> None:
        """The loop handed out a request; *in_flight* are out now."""
        if in_flight >= self.limit:
            self._reached = True

    def observe(self, attempt: Attempt, now: float) -> None:
        """A request came back (*now*: a monotonic clock); it counts in the window it came
        back in, and the first after a window's end closes that window (and opens the next)."""
        if attempt.pressure:
            # (push-back to a request sent before the last cut is the same overload: the cut
            # answered it already, as TCP cuts once per loss event)
            if self._cut_at is None or now - attempt.seconds >= self._cut_at:
                self._pressure = True
        elif attempt.status is not None:
            self._sum += attempt.seconds
            self._samples += 1
        # (the first window began with the first request: its first answer ends it)
        if self._window_end is None or now >= self._window_end:
            self._end_window(now)

    def _end_window(self, now: float) -> None:
        current = self._sum / self._samples if self._samples else None
        baseline = self.baseline
        rising = (
            current is not None
            and baseline is not None
            and current > baseline + max(self.deviation_scale * math.sqrt(self.variance), self.min_rise * baseline)
        )
        if self._pressure or rising:
            # push-back while the limit still doubled each window: the last doubling overshot,
            # and the limit before it drew none, so back to it (TCP halves its window on a loss
            # in slow start); after, the limit grows by one a window and 0.9 of it undoes that
            factor = 0.5 if self._pressure and self.slow_start else self.decrease
            cut = max(1.0, math.floor(self._limit * factor))
            if cut < self._limit:
                self.decreases += 1
            self._limit = cut
            self.slow_start = False
            if self._pressure:
                self._cut_at = now
                soon = self._since_pressure <= 2 * self._hold_length
                self._hold_length = min(self.max_hold_windows, self._hold_length * 2) if soon else self.hold_windows
                self._hold = self._hold_length
                self._since_pressure = 0
        elif self._hold > 0:
            self._hold -= 1
        elif self._reached and current is not None and self._limit < self.maximum:
            self._limit = min(float(self.maximum), self._limit * 2 if self.slow_start else self._limit + 1)
            self.increases += 1
        self._since_pressure += 1
        if current is not None:
            if baseline is None:
                self.baseline = current
            else:
                diff = current - baseline
                self.baseline = baseline + self.alpha * diff
                self.variance = (1 - self.alpha) * (self.variance + self.alpha * diff * diff)
        self._window_end = now + max(self.min_window, self.baseline or 0.0)
        self._sum, self._samples = 0.0, 0
        self._pressure = self._reached = False
