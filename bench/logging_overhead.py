"""µs per logging call: amebo_logging against structlog's fastest setup and python-json-logger.

Run: python bench/logging_overhead.py [--calls N] [--repeat R] [--sink PATH]

Every variant writes complete lines to the same sink (default /dev/null, so that the figures
are the libraries' CPU cost, not the disk's), one write per record.  Each figure is the best
of R runs of N calls; ratios compare figures from the same run.

  (a) amebo_logging JSON: log.info("event_published", action=..., payload_size=...), correlation id set
  (b) structlog's documented fastest production configuration (orjson, BytesLogger, caching)
  (c) stdlib logging + python-json-logger's JsonFormatter
  (d) amebo_logging's stdlib bridge: logging.getLogger("amebo.gists").info("published %s", x)
  (e) a filtered-out amebo_logging debug() call
  (f) structlog's filtered-out debug() call (make_filtering_bound_logger)
  (g) the stdlib floor: logging.getLogger(...).info(...) with a root handler that does nothing,
      i.e. what the logging module itself costs per call (LogRecord, findCaller, dispatch), the
      same in (c) and (d)

The stdlib targets compare the handlers' own cost too: (d - g) / (c - g).
"""

from __future__ import annotations

import argparse
import logging
import sys
import timeit


def _reset_stdlib() -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)


def bench_ours(sink, calls: int, repeat: int) -> tuple[float, float, float]:
    from amebo_logging import configure_logging, get_logger, set_correlation_id

    _reset_stdlib()
    configure_logging(level="info", fmt="json", stream=sink, service_version="0.9.6")
    set_correlation_id("4bf92f3577b34da6a3ce929d0e0e4736")
    log = get_logger("amebo.gists")
    std = logging.getLogger("amebo.gists")
    x = "evt_42"

    a = (
        min(
            timeit.repeat(
                lambda: log.info("event_published", action="user.created", payload_size=123),
                number=calls,
                repeat=repeat,
            )
        )
        / calls
    )
    d = min(timeit.repeat(lambda: std.info("published %s", x), number=calls, repeat=repeat)) / calls
    e = min(
        timeit.repeat(
            lambda: log.debug("event_published", action="user.created", payload_size=123),
            number=calls * 10,
            repeat=repeat,
        )
    ) / (calls * 10)
    set_correlation_id(None)
    return a, d, e


def bench_structlog(sink, calls: int, repeat: int) -> float:
    import orjson
    import structlog

    structlog.reset_defaults()
    structlog.configure(
        cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(file=sink),
    )
    structlog.contextvars.bind_contextvars(correlation_id="4bf92f3577b34da6a3ce929d0e0e4736")
    log = structlog.get_logger()
    t = (
        min(
            timeit.repeat(
                lambda: log.info("event_published", action="user.created", payload_size=123),
                number=calls,
                repeat=repeat,
            )
        )
        / calls
    )
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    return t


def bench_structlog_filtered(calls: int, repeat: int) -> float:
    import structlog

    structlog.reset_defaults()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO), cache_logger_on_first_use=True
    )
    log = structlog.get_logger().bind()  # a bound logger, not the lazy proxy
    t = min(
        timeit.repeat(
            lambda: log.debug("event_published", action="user.created", payload_size=123),
            number=calls * 10,
            repeat=repeat,
        )
    ) / (calls * 10)
    structlog.reset_defaults()
    return t


def bench_floor(calls: int, repeat: int) -> float:
    class Nothing(logging.Handler):
        def handle(self, record: logging.LogRecord) -> bool:
            return True

        def emit(self, record: logging.LogRecord) -> None:
            return None

    _reset_stdlib()
    root = logging.getLogger()
    handler = Nothing()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    std = logging.getLogger("amebo.gists")
    x = "evt_42"
    t = min(timeit.repeat(lambda: std.info("published %s", x), number=calls, repeat=repeat)) / calls
    root.removeHandler(handler)
    return t


def bench_pjl(sink, calls: int, repeat: int) -> float:
    from pythonjsonlogger.json import JsonFormatter

    _reset_stdlib()
    text = open(sink.name, "w")  # noqa: SIM115 - the StreamHandler needs a text stream
    handler = logging.StreamHandler(text)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    std = logging.getLogger("amebo.gists")
    x = "evt_42"
    t = min(timeit.repeat(lambda: std.info("published %s", x), number=calls, repeat=repeat)) / calls
    root.removeHandler(handler)
    text.close()
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sink", default="/dev/null")
    args = parser.parse_args()

    with open(args.sink, "ab") as sink:
        b = bench_structlog(sink, args.calls, args.repeat)
        c = bench_pjl(sink, args.calls, args.repeat)
        a, d, e = bench_ours(sink, args.calls, args.repeat)
        f = bench_structlog_filtered(args.calls, args.repeat)
        g = bench_floor(args.calls, args.repeat)

    us = 1e6
    print(f"python {sys.version.split()[0]}, {args.calls} calls x best of {args.repeat}, sink {args.sink}")
    print(f"(a) amebo_logging JSON, correlation id set ....... {a * us:7.3f} us/call")
    print(f"(b) structlog fastest documented config ........... {b * us:7.3f} us/call")
    print(f"(c) stdlib + python-json-logger JsonFormatter ..... {c * us:7.3f} us/call")
    print(f"(d) amebo_logging stdlib bridge ................... {d * us:7.3f} us/call")
    print(f"(e) amebo_logging filtered-out debug() ............ {e * us:7.3f} us/call")
    print(f"(f) structlog filtered-out debug() ................ {f * us:7.3f} us/call")
    print(f"(g) stdlib floor (a handler that does nothing) .... {g * us:7.3f} us/call")
    print(f"ratio a/b         = {a / b:.2f}   (target <= 0.35)")
    print(f"ratio d/c         = {d / c:.2f}   (target <= 0.40)")
    print(f"ratio (d-g)/(c-g) = {(d - g) / (c - g):.2f}   (the handlers alone)")
    print(f"ratio e/f         = {e / f:.2f}   (e = {e * us:.3f} us; target <= 0.20 us)")


if __name__ == "__main__":
    main()
