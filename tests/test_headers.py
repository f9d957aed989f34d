"""Numbers from headers: one strict reading (ASCII digits), for every header that carries one."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from fairloss_wire.answers import header_int
from tests.conftest import README_EXAMPLE, running_server

# Each of these is refused: characters that str.isdigit or int() take, and plain garbage.
NOT_NUMBERS = [
    "\u00b2",  # superscript two: isdigit() is True, int() raises
    "\u0665",  # Arabic-Indic five: int() takes it
    "\uff15",  # fullwidth five: int() takes it
    "-5",
    "+5",
    "1_000",  # int() takes underscores
    "5 5",
    "0x10",
    "1e3",
    "",
    " ",
]


def wire(value: str) -> bytes:
    """Header bytes as a client would send ``value`` (UTF-8; Latin-1 where it fits, as curl)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("42", 42), (" 42\t", 42), ("007", 7), ("18446744073709551616", 2**64)],
)
def test_header_int_reads_ascii_digits(value: str, expected: int):
    assert header_int(value) == expected


@pytest.mark.parametrize("value", [*NOT_NUMBERS, None])
def test_header_int_refuses_everything_else(value: str | None):
    assert header_int(value) is None


@pytest.mark.anyio
@pytest.mark.parametrize("value", NOT_NUMBERS)
async def test_inference_header_content_length_that_is_not_a_number_is_a_400(
    client: httpx.AsyncClient, value: str
):
    response = await client.post(
        "/v2/models/fairloss/infer",
        content=b"{}",
        headers={
            b"Content-Type": b"application/json",
            b"Inference-Header-Content-Length": wire(value),
        },
    )
    seen = wire(value).decode("latin-1")  # how every server reads header bytes
    assert response.status_code == 400
    assert response.json() == {
        "error": f"Inference-Header-Content-Length is {seen!r}; expected a number of bytes "
        "no larger than the body (2 bytes)"
    }
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["/score", "/compare"])
@pytest.mark.parametrize("value", NOT_NUMBERS)
async def test_content_length_that_is_not_a_number_is_a_400(
    client: httpx.AsyncClient, route: str, value: str
):
    """In process, so the header reaches the app as sent (a real server's parser stops most)."""
    response = await client.post(
        route,
        content=orjson.dumps(README_EXAMPLE),
        headers={b"Content-Type": b"application/json", b"Content-Length": wire(value)},
    )
    assert response.status_code == 400
    assert response.json()["detail"] == "Content-Length is not a number."


def test_the_reported_header_gets_a_400_from_a_real_server():
    """The field report, byte for byte: ``Inference-Header-Content-Length: \\xb2`` (Latin-1 '²')
    sent by curl answered 500 with a traceback in the log."""
    with running_server() as server:
        address = urlsplit(server.url)
        request = (
            b"POST /v2/models/fairloss/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nInference-Header-Content-Length: \xb2\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert reply.endswith(
            b'{"error":"Inference-Header-Content-Length is \'\xc2\xb2\'; expected a number of '
            b'bytes no larger than the body (2 bytes)"}'
        )
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert "Traceback" not in server.output()
