"""Fuzzing ``duetto serve`` from the wire: raw random requests and random JSON bodies against a
live server on the tiny models. Every request ends in an HTTP response below 500 (an
OpenAI-shaped error for a bad body) or the connection closed by the HTTP layer; the server
stays up, answers the next request, and logs no traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from duetto_server import LiveServer, live_server
from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st

READ_SECONDS = 20.0


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("fuzz-serve")
    home = {"DUETTO_HOME": str(directory / "home"), "DUETTO_MODELS": str(directory / "models"), "HF_HUB_OFFLINE": "1"}
    models = ("--target", str(tiny_models["target"]), "--threads", "1", "--context", "512", "--max-tokens", "2")
    with live_server(*models, log_path=directory / "serve.log", env=home) as running:
        yield running
    assert "Traceback" not in running.log()


def exchange(server: LiveServer, raw: bytes, *, half_close: bool = False) -> bytes:
    """Send ``raw`` bytes and read what comes back until the server closes. ``half_close`` ends
    the sending side at once (a raw request whose body is shorter than it claims would otherwise
    wait for the rest); the server reads that as the client leaving, and stops a reply for it."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=READ_SECONDS) as connection:
        try:
            connection.sendall(raw)
            if half_close:
                connection.shutdown(socket.SHUT_WR)
        except OSError:
            return b""  # the server closed first: a refusal
        answer = b""
        while True:
            try:
                piece = connection.recv(65536)
            except ConnectionResetError:
                return answer
            if not piece:
                return answer
            answer += piece


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def assert_still_serving(server: LiveServer) -> None:
    answer = exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 200, answer[:200]


request_lines = st.tuples(
    st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"G\x00T", b""]),
    st.sampled_from(
        [b"/v1/chat/completions", b"/v1/completions", b"/v1/models", b"/health", b"/%00", b"/" + b"a" * 9000]
    ),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9", b""]),
)
headers = st.lists(
    st.tuples(
        st.sampled_from([b"Content-Type", b"Content-Length", b"Transfer-Encoding", b"Authorization", b"X\x7f"]),
        st.sampled_from(
            [b"application/json", b"text/plain", b"chunked", b"-1", b"99999999999", b"7", b"Bearer x", b""]
        ),
    ),
    max_size=4,
)


@fuzz(300)
@given(request_lines, headers, st.binary(max_size=300))
def test_raw_requests_get_a_response_or_a_closed_connection_never_a_500(server, line, fields, body) -> None:
    method, path, version = line
    raw = b" ".join(part for part in (method, path, version) if part) + b"\r\nHost: x\r\n"
    raw += b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"Connection: close\r\n\r\n" + body
    status = status_of(exchange(server, raw, half_close=True))
    assert status is None or status < 500 or status == 503, status


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
user_message = st.fixed_dictionaries({"role": st.just("user"), "content": st.text(min_size=1, max_size=30)})
bodies = st.fixed_dictionaries(
    {"model": st.just("duetto"), "messages": st.lists(user_message, min_size=1, max_size=2)},
    optional={"max_tokens": st.integers(-2, 3) | json_values, "stream": st.booleans(),
              "temperature": st.floats(-1, 3) | json_values, "stop": json_values, "n": st.sampled_from([1, 2]),
              "seed": st.integers(-5, 2**70), "duetto": json_values},
) | st.fixed_dictionaries(
    {"messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "robot"]),
                                                  "content": st.text(max_size=30) | json_values}), max_size=3)},
) | json_values  # fmt: skip


@fuzz(300)
@given(bodies)
def test_chat_bodies_get_a_completion_or_an_openai_shaped_error(server, body) -> None:
    data = json.dumps(body).encode()
    raw = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    answer = exchange(server, raw)
    status = status_of(answer)
    assert status is not None, answer[:200]
    assert status in (200, 400, 404, 413, 422, 503), answer[:300]
    if status != 200:
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["message"] and error["type"], error


def test_the_server_still_answers_after_the_fuzzing(server) -> None:
    assert_still_serving(server)
