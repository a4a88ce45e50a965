"""Kibana's saved objects import API, as far as ``amebo-logship setup`` uses it (a test helper)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


class FakeKibana:
    """Kibana's saved objects import API, as far as `setup` uses it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.imports: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                boundary = self.headers["Content-Type"].split("boundary=", 1)[1].encode()
                part = body.split(b"--" + boundary)[1]
                headers, _, content = part.partition(b"\r\n\r\n")
                lines = [orjson.loads(x) for x in content.rstrip(b"\r\n").splitlines()]
                outer.imports.append(
                    {
                        "path": self.path,
                        "xsrf": self.headers.get("kbn-xsrf"),
                        "auth": self.headers.get("Authorization"),
                        "objects": lines,
                        "disposition": headers,
                    }
                )
                answer = (
                    {"success": True, "successCount": len(lines), "successResults": []}
                    if outer.status == 200
                    else {"statusCode": outer.status, "message": "no"}
                )
                data = json.dumps(answer).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeKibana:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
