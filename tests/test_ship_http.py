"""The bulk transport over real sockets (amebo_logging.ship.http under it): which failures are
a node gone (the next node is tried at once) and which a node busy (the sender backs off,
the same documents are not sent elsewhere), and reasons that name the cause plainly."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import orjson
import pytest

from amebo_logging.ship.connection import ConnectionSettings
from amebo_logging.ship.transport import ElasticsearchTransport

from .fake_es import FakeElasticsearch

pytestmark = pytest.mark.slow

BODY = b'{"create":{"_id":"a-0"}}\n' + orjson.dumps({"@timestamp": "2026-12-03T00:00:00Z", "seq": 0}) + b"\n"


@pytest.fixture
def silent() -> Iterator[str]:
    """A node that takes connections and requests and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)  # (read, never answered: the request sits in its buffer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def refused_url() -> str:
    """A port nothing listens on (bound, then closed)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_node_that_takes_the_request_and_does_not_answer_is_busy_not_gone(silent, es):
    """A read timeout: the documents may be being indexed there, so they are not sent to the
    next node at once (the answer says timeout, the sender backs off)."""
    transport = ElasticsearchTransport(ConnectionSettings(urls=[silent, es.url], request_timeout=0.3))
    try:
        answer = transport.send(BODY, "logs-amebo-default")
    finally:
        transport.close()
    assert answer.timeout and answer.status is None and answer.node == silent
    assert "no answer in time" in answer.reason and "HTTPConnection" not in answer.reason
    assert es.bulk_requests == 0 and answer.unreachable == ()


def test_a_refused_node_is_skipped_for_the_next_at_once_and_named(es):
    dead = refused_url()
    transport = ElasticsearchTransport(ConnectionSettings(urls=[dead, es.url], request_timeout=5))
    try:
        answers = [transport.send(BODY, "logs-amebo-default") for _ in range(2)]
    finally:
        transport.close()
    assert [a.status for a in answers] == [200, 200] and es.bulk_requests == 2
    assert answers[0].unreachable[0][0] == dead  # the first went to the dead node first
    reason = answers[0].unreachable[0][1]
    assert reason.startswith("cannot connect: ") and "Connection refused" in reason
    assert "<" not in reason and "HTTPConnection(" not in reason  # no object reprs
    assert answers[1].unreachable == ()  # the dead node is left alone for a while


def test_when_no_node_answers_the_answer_says_why_of_the_last(es):
    dead, other = refused_url(), refused_url()
    transport = ElasticsearchTransport(ConnectionSettings(urls=[dead, other], request_timeout=5))
    try:
        answer = transport.send(BODY, "logs-amebo-default")
    finally:
        transport.close()
    assert answer.status is None and not answer.timeout
    assert [url for url, _ in answer.unreachable] == [dead, other] and "Connection refused" in answer.reason


def test_an_error_status_is_an_answer_with_elasticsearchs_reason(es):
    es.fail_requests(429)
    transport = ElasticsearchTransport(ConnectionSettings(urls=[es.url]))
    try:
        answer = transport.send(BODY, "logs-amebo-default")
    finally:
        transport.close()
    assert answer.status == 429 and answer.error_type == "es_rejected_execution_exception"
    assert answer.reason.startswith("HTTP 429: ")


def test_a_server_that_is_not_elasticsearch_is_told_apart(tmp_path):
    """check against a plain web server: the answer has no X-Elastic-Product header."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from amebo_logging.ship.checks import ask_cluster
    from amebo_logging.ship.http import HttpNode

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"version":{"number":"9.0.0"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        answer = ask_cluster(HttpNode(url, ConnectionSettings(urls=[url])))
    finally:
        server.shutdown()
        server.server_close()
    assert answer.problem == "not_elasticsearch"
    with FakeElasticsearch() as es:
        real = ask_cluster(HttpNode(es.url, ConnectionSettings(urls=[es.url])))
    assert real.problem is None and real.version == es.version
