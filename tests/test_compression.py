"""Compressed request bodies (``Content-Encoding: gzip`` or ``deflate``) on every POST route.

In process: the answers to compressed bodies are byte for byte those to the plain ones; the
body limit counts decompressed bytes and decompression stops one byte past it; bad compressed
data is a 400 and other codings a 415. Against a real server: tritonclient's
``request_compression_algorithm`` and a small body that inflates past the limit.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton

import service.encoding
from service.settings import Settings
from tests.conftest import README_EXAMPLE, Server, assert_no_leak, running_server
from tests.test_api_errors import assert_problem

LIMIT = 64_000
INFER = "/v2/models/fairloss/infer"
RNG = np.random.default_rng(11)
LOGITS = RNG.normal(size=(60, 4)).round(6)
LABELS = RNG.integers(0, 4, 60)


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


# id: (Content-Encoding, compress)
CODINGS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", lambda data: gzip.compress(data, mtime=0)),
    "deflate_zlib": ("deflate", zlib.compress),
    "deflate_raw": ("deflate", raw_deflate),
}


def oip_binary() -> tuple[bytes, dict[str, str]]:
    logits, labels = LOGITS.astype(np.float32), LABELS.astype(np.int64)
    header = orjson.dumps(
        {
            "inputs": [
                {"name": name, "datatype": kind, "shape": list(array.shape)}
                | {"parameters": {"binary_data_size": array.nbytes}}
                for name, kind, array in (("logits", "FP32", logits), ("labels", "INT64", labels))
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    body = header + logits.tobytes() + labels.tobytes()
    return body, {"Inference-Header-Content-Length": str(len(header))}


def oip_json() -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": "logits", "datatype": "FP64", "shape": [60, 4], "data": LOGITS.ravel()},
                {"name": "labels", "datatype": "INT64", "shape": [60], "data": LABELS},
            ]
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


# id: (path, plain body, extra headers)
ROUTES: dict[str, tuple[str, bytes, dict[str, str]]] = {
    "score": ("/score", orjson.dumps({"logits": LOGITS.tolist(), "labels": LABELS.tolist()}), {}),
    "compare": (
        "/compare",
        orjson.dumps(
            {
                "labels": LABELS.tolist(),
                "candidates": [
                    {"name": "a", "logits": LOGITS.tolist()},
                    {"name": "b", "logits": (LOGITS * 2).tolist()},
                ],
            }
        ),
        {},
    ),
    "oip_json": (INFER, oip_json(), {}),
    "oip_binary": (INFER, *oip_binary()),
}
GOOD = orjson.dumps(README_EXAMPLE)


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def post(
    client: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str], chunk: int = 0
) -> httpx.Response:
    """``body`` whole with a Content-Length, or chunked in pieces of ``chunk`` bytes."""
    content = pieces(body, chunk) if chunk else body
    return await client.post(path, content=content, headers=headers)


async def still_serving(client: httpx.AsyncClient) -> None:
    response = await client.post("/score", content=GOOD)
    assert response.status_code == 200, response.text


@pytest.fixture
def settings() -> Settings:
    return Settings(max_body_bytes=LIMIT)


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [0, 1, 333], ids=["whole", "1-byte-chunks", "333-byte-chunks"])
@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("route", ROUTES)
async def test_compressed_answer_is_byte_identical(client, route, coding, chunk):
    path, plain, headers = ROUTES[route]
    encoding, compress = CODINGS[coding]
    body = compress(plain)
    assert len(body) < len(plain)
    expected = await post(client, path, plain, headers)
    assert expected.status_code == 200, expected.text
    response = await post(client, path, body, {**headers, "Content-Encoding": encoding}, chunk)
    assert response.status_code == 200, response.text
    assert response.content == expected.content
    assert response.headers["content-type"] == expected.headers["content-type"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("header", "compress"),
    [
        ("GZIP", CODINGS["gzip"][1]),
        (" x-gzip\t", CODINGS["gzip"][1]),
        ("Deflate", zlib.compress),
        ("gzip,", CODINGS["gzip"][1]),
        ("identity", None),
        (" IDENTITY ", None),
        ("", None),
    ],
)
async def test_coding_names_are_case_insensitive_and_identity_is_none(client, header, compress):
    plain = ROUTES["score"][1]
    expected = await client.post("/score", content=plain)
    body = compress(plain) if compress else plain
    response = await client.post("/score", content=body, headers={"content-encoding": header})
    assert response.status_code == 200, response.text
    assert response.content == expected.content


class CountingDecompressor:
    """A zlib decompressor that adds up what it produced."""

    produced = 0

    def __init__(self, wbits: int) -> None:
        self.inner = zlib.decompressobj(wbits)

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out = self.inner.decompress(data, max_length)
        CountingDecompressor.produced += len(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> type[CountingDecompressor]:
    monkeypatch.setattr(CountingDecompressor, "produced", 0)
    monkeypatch.setattr(service.encoding, "new_decompressor", CountingDecompressor)
    return CountingDecompressor


BOMB = GOOD + b" " * 10_000_000  # valid JSON, 10 MB once inflated


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [0, 1000])
@pytest.mark.parametrize("coding", CODINGS)
async def test_small_body_inflating_past_the_limit_is_413_and_inflation_stops(
    client, counting, coding, chunk
):
    encoding, compress = CODINGS[coding]
    body = compress(BOMB)
    assert len(body) < LIMIT // 2
    response = await post(client, "/score", body, {"Content-Encoding": encoding}, chunk)
    assert_problem(response, 413, detail=f"larger than the limit of {LIMIT} bytes")
    assert counting.produced == LIMIT + 1
    await still_serving(client)


@pytest.mark.anyio
@pytest.mark.parametrize("coding", CODINGS)
async def test_limit_counts_decompressed_bytes_exactly(client, coding):
    encoding, compress = CODINGS[coding]
    at_limit = GOOD + b" " * (LIMIT - len(GOOD))
    response = await client.post(
        "/score", content=compress(at_limit), headers={"Content-Encoding": encoding}
    )
    assert response.status_code == 200, response.text
    response = await client.post(
        "/score", content=compress(at_limit + b" "), headers={"Content-Encoding": encoding}
    )
    assert_problem(response, 413)


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [0, 4096])
async def test_compressed_bytes_past_the_limit_are_413(client, counting, chunk):
    body = gzip.compress(RNG.bytes(LIMIT * 2))  # does not compress: longer than LIMIT as sent
    response = await post(client, "/score", body, {"Content-Encoding": "gzip"}, chunk)
    assert_problem(response, 413)
    assert counting.produced <= LIMIT + 1
    await still_serving(client)


GZIPPED = gzip.compress(GOOD, mtime=0)
AFTER = "it holds data after the end of the"
BAD_DATA = [
    pytest.param("gzip", b"", "it ends before the gzip stream does", id="gzip-empty"),
    pytest.param("gzip", GOOD, "incorrect header check", id="gzip-plain-json"),
    pytest.param("gzip", GZIPPED[:-9], "it ends before the gzip stream does", id="gzip-cut"),
    pytest.param("gzip", GZIPPED[:-8] + bytes(8), "incorrect data check", id="gzip-bad-crc"),
    # After a member, gzip expects the next one: other bytes fail its header check.
    pytest.param("gzip", GZIPPED + b"{}", "incorrect header check", id="gzip-then-bytes"),
    pytest.param(
        "gzip",
        GZIPPED + GZIPPED[:20],
        "it ends before the gzip stream does",
        id="gzip-then-cut-member",
    ),
    pytest.param("deflate", b"x", "it ends before the deflate stream does", id="deflate-1-byte"),
    pytest.param(
        "deflate", zlib.compress(GOOD)[:-3], "it ends before the deflate stream does", id="zlib-cut"
    ),
    pytest.param(
        "deflate", raw_deflate(GOOD)[:-2], "it ends before the deflate stream does", id="raw-cut"
    ),
    pytest.param(
        "deflate", zlib.compress(GOOD) + b" ", f"{AFTER} deflate stream", id="zlib-then-bytes"
    ),
    pytest.param("deflate", b"\xff" * 40, "invalid block type", id="deflate-garbage"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [0, 3])
@pytest.mark.parametrize(("encoding", "body", "reason"), BAD_DATA)
async def test_bad_compressed_data_is_400_naming_the_coding(client, encoding, body, reason, chunk):
    response = await post(client, "/score", body, {"Content-Encoding": encoding}, chunk)
    problem = assert_problem(response, 400)
    assert problem["detail"] == f"The body is not valid {encoding} data: {reason}."
    await still_serving(client)


@pytest.mark.anyio
@pytest.mark.parametrize("chunk", [0, 3, 1000])
@pytest.mark.parametrize("members", [2, 3, 7])
async def test_a_gzip_body_of_several_members_is_read_whole(client, members, chunk):
    """RFC 1952 §2.2: a gzip file is a series of members; ``gzip -d`` reads them all."""
    cuts = [len(GOOD) * k // members for k in range(members + 1)]
    body = b"".join(gzip.compress(GOOD[a:b], mtime=0) for a, b in itertools.pairwise(cuts))
    assert gzip.decompress(body) == GOOD  # the standard library reads it whole too
    expected = await post(client, "/score", GOOD, {})
    response = await post(client, "/score", body, {"Content-Encoding": "gzip"}, chunk)
    assert response.status_code == 200, response.text
    assert response.content == expected.content


@pytest.mark.anyio
async def test_bad_compressed_data_on_oip_is_an_error_message(client):
    response = await client.post(INFER, content=GZIPPED[:-9], headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "The body is not valid gzip data: it ends before the gzip stream does."
    }


UNSUPPORTED = [
    ([("Content-Encoding", "br")], "br"),
    ([("Content-Encoding", "compress")], "compress"),
    ([("Content-Encoding", "ZSTD")], "zstd"),
    ([("Content-Encoding", "gzip, gzip")], "gzip, gzip"),
    ([("Content-Encoding", "identity, gzip")], "identity, gzip"),
    ([("Content-Encoding", "gzip"), ("Content-Encoding", "deflate")], "gzip, deflate"),
    ([("Content-Encoding", "x" * 150)], "x" * 100 + "..."),
]


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["score", "compare", "oip_json"])
@pytest.mark.parametrize(("headers", "named"), UNSUPPORTED, ids=[n[:20] for _, n in UNSUPPORTED])
async def test_other_codings_are_415_naming_them(client, route, headers, named):
    path, plain, _ = ROUTES[route]
    response = await client.post(path, content=gzip.compress(plain), headers=headers)
    detail = f"Content-Encoding {named} is not supported; send gzip, deflate or none."
    if path == INFER:
        assert response.status_code == 415
        assert response.json() == {"error": detail}
        assert_no_leak(response.text)
    else:
        assert_problem(response, 415)
        assert response.json()["detail"] == detail
    await still_serving(client)


# --- a real server ------------------------------------------------------------------------------

SERVER_LIMIT = 1_000_000


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server({"FAIRLOSS_MAX_BODY_BYTES": str(SERVER_LIMIT)}) as running:
        yield running


def inputs(binary: bool) -> list[triton.InferInput]:
    made = []
    for name, array, kind in (
        ("logits", LOGITS.astype(np.float32), "FP32"),
        ("labels", LABELS.astype(np.int64), "INT64"),
    ):
        item = triton.InferInput(name, list(array.shape), kind)
        item.set_data_from_numpy(array, binary_data=binary)
        made.append(item)
    return made


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_request_compression_gives_the_same_outputs(server, algorithm, binary):
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        plain = client.infer("fairloss", inputs(binary))
        packed = client.infer("fairloss", inputs(binary), request_compression_algorithm=algorithm)
    finally:
        client.close()
    assert plain.get_response() == packed.get_response()
    for name in ("ce", "penalty", "total"):
        np.testing.assert_array_equal(packed.as_numpy(name), plain.as_numpy(name))
        assert packed.as_numpy(name).shape == (60,)


ALGORITHMS = [None, "gzip", "deflate"]
PAIRS = list(itertools.product(ALGORITHMS, ALGORITHMS))  # (request, response)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_every_compression_pair_sync_and_aio(server, binary):
    """tritonclient's request and response compression, each none, gzip or deflate, through
    its sync and its asyncio client: every pair gives the plain request's outputs (responses
    come back uncompressed, which both clients read by their Content-Encoding)."""
    import asyncio

    import tritonclient.http.aio as triton_aio

    host = server.url.removeprefix("http://")
    client = triton.InferenceServerClient(host)
    try:
        want = client.infer("fairloss", inputs(binary)).as_numpy("total")
        for request, response in PAIRS:
            got = client.infer(
                "fairloss",
                inputs(binary),
                request_compression_algorithm=request,
                response_compression_algorithm=response,
            )
            np.testing.assert_array_equal(got.as_numpy("total"), want)
    finally:
        client.close()

    async def each_pair() -> list[Any]:
        async with triton_aio.InferenceServerClient(host) as aio:
            return [
                (
                    await aio.infer(
                        "fairloss",
                        inputs(binary),
                        request_compression_algorithm=request,
                        response_compression_algorithm=response,
                    )
                ).as_numpy("total")
                for request, response in PAIRS
            ]

    for got in asyncio.run(each_pair()):
        np.testing.assert_array_equal(got, want)


def test_real_server_inflation_bomb_is_413_then_serves(server):
    body = gzip.compress(GOOD + b" " * 50_000_000, mtime=0)
    assert len(body) < 100_000
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post("/score", content=body, headers={"Content-Encoding": "gzip"})
        assert response.status_code == 413, response.text
        assert f"limit of {SERVER_LIMIT} bytes" in response.json()["detail"]
        path, plain, _ = ROUTES["score"]
        expected = http.post(path, content=plain)
        packed = gzip.compress(plain)
        chunked = http.post(
            path,
            content=(packed[k : k + 500] for k in range(0, len(packed), 500)),
            headers={"Content-Encoding": "gzip"},
        )
    assert expected.status_code == 200, expected.text
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert chunked.status_code == 200, chunked.text
    assert chunked.content == expected.content
