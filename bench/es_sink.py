"""A local sink that answers ``_bulk`` like Elasticsearch and stores nothing (for benchmarks).

    python bench/es_sink.py [--port 0]      prints "LISTENING <port>" once ready

It honours ``filter_path`` the way Elasticsearch does for the two shapes the benchmark uses:
with ``filter_path=errors,items.*.status,...`` each item is ``{"<op>":{"status":201}}``;
without, each item is the full result (``_index``, ``_id``, ``_version``, ``result``,
``_shards``, ``_seq_no``, ``_primary_term``, ``status``).  Loopback only.

:class:`Handler` is also the base of other benchmarks' sinks: :meth:`Handler.received` sees
each ``_bulk`` body before it is answered.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_ids = itertools.count()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

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
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if parts.path.endswith("/_has_privileges"):  # the shipper's preflight: the credentials may write
            self._reply(b'{"has_all_requested":true,"index":{}}')
            return
        if not parts.path.endswith("/_bulk"):
            self._reply(b'{"acknowledged":true}')
            return
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
        self._reply(b'{"errors":false,"took":1,"items":[' + items + b"]}")

    do_PUT = do_POST  # noqa: N815 - http.server dispatches on this name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
