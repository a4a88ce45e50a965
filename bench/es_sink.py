"""A local sink that answers ``_bulk`` like Elasticsearch and stores nothing (for benchmarks).

    python bench/es_sink.py [--port 0] [--delay SECONDS] [--reject-beyond K]
                                               prints "LISTENING <port>" once ready

It honours ``filter_path`` the way Elasticsearch does for the two shapes the benchmark uses:
with ``filter_path=errors,items.*.status,...`` each item is ``{"<op>":{"status":201}}``;
without, each item is the full result (``_index``, ``_id``, ``_version``, ``result``,
``_shards``, ``_seq_no``, ``_primary_term``, ``status``).  Loopback only.

* ``--delay D``: each ``_bulk`` is answered D seconds after it arrived (its request line and
  headers read), as a distant or busy cluster answers: the wait costs no CPU, many requests
  can wait at once, and the sink's own reading, decoding and counting of a request are within
  its D seconds (a cluster decodes and indexes on many cores; this sink, on the shippers' own,
  under one interpreter lock, would otherwise add its queue to the latency of every burst).
* ``--reject-beyond K``: a ``_bulk`` that arrives while K others are being handled is
  answered 429 ``es_rejected_execution_exception``, as Elasticsearch's indexing pressure
  answers when its coordinating limit is reached.
* ``GET /_sink/stats``: documents and requests received, requests rejected, the most handled
  at once.

:class:`Handler` is also the base of other benchmarks' sinks: :meth:`Handler.received` sees
each accepted ``_bulk`` body before it is answered.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# A gzipped body is decoded with ISA-L's gzip where it is installed (amebo-logging depends on it):
# this sink runs on the shippers' cores, where a real cluster's decoding does not, and Python's
# gzip took 0.49 s of them in a 1,000,000-line run whose every request came gzipped (ISA-L's: 0.23).
try:
    from isal.igzip import decompress as _gunzip
except ImportError:
    from gzip import decompress as _gunzip

_ids = itertools.count()

REJECTED = (
    b'{"error":{"root_cause":[{"type":"es_rejected_execution_exception","reason":"rejected execution of '
    b'coordinating operation"}],"type":"es_rejected_execution_exception","reason":"rejected execution of '
    b"coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, "
    b'coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]"},"status":429}'
)


class Stats:
    """What the sink saw (one lock: request handlers run in threads of their own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.docs = 0
        self.requests = 0
        self.gzipped = 0  # requests whose body came gzipped
        self.rejected = 0
        self.active = 0
        self.max_active = 0

    def as_json(self) -> bytes:
        with self.lock:
            return json.dumps(
                {
                    "docs": self.docs,
                    "requests": self.requests,
                    "gzipped": self.gzipped,
                    "rejected": self.rejected,
                    "max_active": self.max_active,
                }
            ).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # (TCP_NODELAY, as Elasticsearch sets on its HTTP sockets: else the headers and the body,
    # written apart, wait out the client's delayed ACK, 40 ms on Linux, on every answer after
    # the first on a connection)
    disable_nagle_algorithm = True
    delay = 0.0
    reject_beyond: int | None = None
    stats = Stats()

    def log_message(self, *args):
        pass

    def _reply(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/_sink/stats"):
            self._reply(self.stats.as_json())
            return
        if self.path.startswith("/_data_stream/"):  # the shipper's preflight: the target exists
            self._reply(b'{"data_streams":[{"name":"logs-amebo-default"}]}')
            return
        self._reply(
            b'{"name":"sink","cluster_name":"sink","version":{"number":"9.1.0"},"tagline":"You Know, for Search"}'
        )

    def do_HEAD(self) -> None:
        self._reply(b"")

    def received(self, body: bytes) -> None:
        """A ``_bulk`` body, as it arrived (for subclasses: this sink keeps nothing)."""

    def do_POST(self) -> None:
        arrived = time.monotonic()
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        gzipped = self.headers.get("Content-Encoding", "").lower() == "gzip"
        if gzipped:  # as Elasticsearch takes it
            body = _gunzip(body)
        if parts.path.endswith("/_has_privileges"):  # the shipper's preflight: the credentials may write
            self._reply(b'{"has_all_requested":true,"index":{}}')
            return
        if not parts.path.endswith("/_bulk"):
            self._reply(b'{"acknowledged":true}')
            return
        stats = self.stats
        with stats.lock:
            stats.requests += 1
            stats.gzipped += gzipped
            if self.reject_beyond is not None and stats.active >= self.reject_beyond:
                stats.rejected += 1
                rejected = True
            else:
                rejected = False
                stats.active += 1
                stats.max_active = max(stats.max_active, stats.active)
        if rejected:
            self._reply(REJECTED, 429)
            return
        try:
            self._bulk(parts, body, arrived)
        finally:
            with stats.lock:
                stats.active -= 1

    def _bulk(self, parts, body: bytes, arrived: float) -> None:
        self.received(body)
        segs = [s for s in parts.path.split("/") if s]
        index = (segs[0] if len(segs) == 2 else "sink").encode()
        n = body.count(b"\n") // 2
        op = b"create" if body.startswith(b'{"create"') else b"index"
        if "filter_path" in parse_qs(parts.query):
            items = b",".join([b'{"' + op + b'":{"status":201}}'] * n)
        else:
            start = next(_ids)
            for _ in range(n - 1):
                next(_ids)
            items = b",".join(
                b'{"%s":{"_index":".ds-%s-000001","_id":"sink%016d","_version":1,"result":"created",'
                b'"_shards":{"total":1,"successful":1,"failed":0},"_seq_no":%d,"_primary_term":1,"status":201}}'
                % (op, index, start + k, start + k)
                for k in range(n)
            )
        left = arrived + self.delay - time.monotonic()
        if left > 0:
            time.sleep(left)
        with self.stats.lock:
            self.stats.docs += n
        self._reply(b'{"errors":false,"took":1,"items":[' + items + b"]}")

    do_PUT = do_POST  # noqa: N815 - http.server dispatches on this name


class Server(ThreadingHTTPServer):
    """The sink's server: a thread per connection, and the listen backlog Elasticsearch has."""

    daemon_threads = True
    # (a class attribute: the constructor listens. Elasticsearch's Netty listens with the system's
    # somaxconn; Python's default of 5 overflows when a shipper opens many connections at once,
    # and each dropped SYN waits out the kernel's 1 s retransmission)
    request_queue_size = socket.SOMAXCONN


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="answer each _bulk this many seconds late")
    parser.add_argument("--reject-beyond", type=int, default=None, help="429 a _bulk arriving while K are handled")
    args = parser.parse_args()
    Handler.delay = args.delay
    Handler.reject_beyond = args.reject_beyond
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
