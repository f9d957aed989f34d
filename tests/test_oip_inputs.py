"""Open Inference Protocol inputs: FP16 and BF16, probabilities, log-probabilities, sample
weights and K-dimensional shapes, binary and JSON, each against an independent reference
(`fairloss.score_batch` on the same float64 arrays, torch's bfloat16 and float16, exact rounding
by fractions, ``torch.nn.CrossEntropyLoss``), and every bad input a 400 that says where."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import httpx
import ml_dtypes
import numpy as np
import orjson
import pytest
import torch
import tritonclient.http as triton

from fairloss import ScoringOptions, score_batch
from fairloss.scoring import TERMS, BatchScores
from fairloss_wire.typed_arrays import bfloat16_bits_to_float32
from service.oip_dtypes import round_to_bfloat16, rounded

INFER = "/v2/models/fairloss/infer"
TORCH = {"FP16": torch.float16, "BF16": torch.bfloat16, "FP32": torch.float32}
NUMPY = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}
Tensor = tuple[str, str, np.ndarray]  # name, datatype, values (exactly what the datatype holds)


def held(values: Any, datatype: str) -> np.ndarray:
    """float32 ``values`` as ``datatype`` holds them (torch rounds float32 once, correctly)."""
    array = np.asarray(values, dtype=np.float32)
    if datatype == "FP64":
        return array.astype(np.float64)
    return torch.from_numpy(array).to(TORCH[datatype]).double().numpy()


def wire(values: np.ndarray, datatype: str) -> bytes:
    if datatype == "BF16":
        bf16 = torch.from_numpy(np.ascontiguousarray(values, np.float32)).to(torch.bfloat16)
        return bf16.view(torch.int16).numpy().astype("<i2").tobytes()
    return np.ascontiguousarray(values, dtype=NUMPY[datatype]).tobytes()


def body_of(tensors: list[Tensor], *, binary: bool, **request: Any) -> tuple[bytes, dict[str, str]]:
    inputs: list[dict[str, Any]] = []
    chunks = []
    for name, datatype, values in tensors:
        spec: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
        if binary:
            chunks.append(wire(values, datatype))
            spec["parameters"] = {"binary_data_size": len(chunks[-1])}
        else:
            spec["data"] = values.ravel().tolist()
        inputs.append(spec)
    header = orjson.dumps({"inputs": inputs, **request})
    headers = {"Inference-Header-Content-Length": str(len(header))} if binary else {}
    return header + b"".join(chunks), headers


def outputs_of(response: httpx.Response) -> dict[str, np.ndarray]:
    assert response.status_code == 200, response.text
    split = int(response.headers.get("inference-header-content-length", len(response.content)))
    offset = split
    found = {}
    for output in orjson.loads(response.content[:split])["outputs"]:
        dtype = NUMPY[output["datatype"]]
        if "data" in output:
            assert np.ndim(output["data"]) == 1  # sent flat, with the shape beside it
            values = np.asarray(output["data"], dtype=dtype)
        else:
            size = output["parameters"]["binary_data_size"]
            values = np.frombuffer(response.content[offset : offset + size], dtype=dtype)
            offset += size
        found[output["name"]] = values.reshape(output["shape"])
    return found


def reference(kind: str, tensors: list[Tensor], **options: Any) -> BatchScores:
    """The core on the same values, held in the dtype the service reads the datatype into
    (BF16 as float32), which sets where probabilities are clipped."""
    arrays = {name: values for name, _, values in tensors}
    datatype = next(datatype for name, datatype, _ in tensors if name == kind)
    return score_batch(
        np.asarray(arrays[kind], dtype=NUMPY.get(datatype, "<f4")),
        np.asarray(arrays["labels"], dtype=np.int64),
        ScoringOptions(**options),
        kind=kind,  # type: ignore[arg-type]
        sample_weight=arrays.get("sample_weight"),
    )


def batch_of(kind: str, datatype: str, shape: tuple[int, ...], seed: int) -> list[Tensor]:
    """Predictions of ``kind`` in ``datatype`` (N, C, d1, ...), labels and FP16 weights (k / 8,
    exact in every datatype)."""
    rng = np.random.default_rng(seed)
    n, c, *rest = shape
    if kind == "logits":
        predictions = rng.normal(scale=3.0, size=shape)
    elif kind == "probabilities":  # k / 64 for counts k summing to 64: exact in every datatype
        counts = rng.multinomial(64, np.full(c, 1 / c), size=(n, *rest))
        predictions = np.moveaxis(counts, -1, 1) / 64
    else:  # one class at 0, the others far below: normalised, however the others round
        predictions = rng.uniform(-25.0, -12.0, size=shape)
        np.put_along_axis(predictions, rng.integers(0, c, (n, 1, *rest)), 0.0, axis=1)
    labels = rng.integers(0, c, size=(n, *rest))
    weights = rng.integers(0, 33, size=(n, *rest)) / 8
    return [
        (kind, datatype, held(predictions, datatype)),
        ("labels", "INT32", labels),
        ("sample_weight", "FP16", weights),
    ]


# --- decoding and rounding ---------------------------------------------------------------------

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -2.5, 3.0e38, -3.0e38, 1.0e-38, 1e-40, 9e-41]


def test_bf16_bits_decode_as_torch_bfloat16():
    """Every one of the 65536 patterns: subnormals, +-inf, NaN and every magnitude."""
    bits = np.arange(2**16, dtype=np.uint16)
    want = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    got = bfloat16_bits_to_float32(bits.astype("<u2"))
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    special = torch.tensor(SPECIAL, dtype=torch.bfloat16)
    decoded = bfloat16_bits_to_float32(special.view(torch.int16).numpy().view(np.uint16))
    np.testing.assert_array_equal(decoded, special.float().numpy())
    assert decoded[10] == special[10].item() != 0.0  # a subnormal stays one


def grid(datatype: str) -> np.ndarray:
    """Every finite value of a 16-bit datatype, sorted, decoded by torch."""
    bits = torch.from_numpy(np.arange(2**16, dtype=np.uint16).view(np.int16))
    values = bits.view(TORCH[datatype]).double().numpy()
    return np.unique(values[np.isfinite(values)])


def nearest(x: float, values: np.ndarray, datatype: str) -> float:
    """``x`` rounded to the nearest of ``values``, ties to the even significand, in fractions."""
    k = int(np.searchsorted(values, x))
    candidates = [float(values[j]) for j in (k - 1, k) if 0 <= j < len(values)]
    odd = torch.tensor(candidates, dtype=TORCH[datatype]).view(torch.int16).numpy() & 1
    pairs = zip(candidates, odd.tolist(), strict=True)
    return min(pairs, key=lambda c: (abs(Fraction(c[0]) - Fraction(x)), c[1]))[0]


EXPONENTS = {"FP16": (-26, 16), "BF16": (-136, 128)}  # past both ends of the finite values


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_json_numbers_round_to_the_nearest_value_of_the_datatype(datatype):
    """float64 numbers over the datatype's range, its ties and the numbers just below them,
    against exact rounding; 1 + 2**-8 + 2**-30 rounds up in BF16 (torch, rounding through
    float32, gives 1)."""
    values = grid(datatype)
    rng = np.random.default_rng(1)
    random = rng.normal(size=3000) * 2.0 ** rng.uniform(*EXPONENTS[datatype], 3000)
    ties = (values[1:] + values[:-1])[::37] / 2
    xs = np.concatenate([random, ties, np.nextafter(ties, 0), [1 + 2**-8 + 2**-30]])
    xs = xs[np.abs(xs) <= values[-1]]
    want = [nearest(float(x), values, datatype) for x in xs]
    np.testing.assert_array_equal(rounded(xs, datatype).astype(np.float64), want)
    assert round_to_bfloat16(np.array([1 + 2**-8 + 2**-30]))[0] == 1 + 2**-7
    # past the largest finite value, to infinity from the midpoint on (ties to even)
    largest = values[-1]
    midpoint = largest + (largest - values[-2]) / 2
    edge = np.array([np.nextafter(midpoint, 0), midpoint, -midpoint, 1e300, np.inf, -np.inf])
    np.testing.assert_array_equal(
        rounded(edge, datatype), [largest, np.inf, -np.inf, np.inf, np.inf, -np.inf]
    )
    assert np.isnan(rounded(np.array([np.nan]), datatype)).all()
    torch_rounds = torch.tensor([1 + 2**-8 + 2**-30], dtype=torch.float64).to(torch.bfloat16)
    assert torch_rounds.item() == 1.0


@pytest.mark.anyio
@pytest.mark.parametrize("datatype", ["FP16", "BF16", "FP32"])
async def test_json_and_binary_tensors_of_one_datatype_give_the_same_numbers(client, datatype):
    """JSON numbers (float32 values, so torch's rounding is a reference) are rounded to the
    declared datatype as a binary tensor of it holds them."""
    rng = np.random.default_rng(2)
    raw = rng.normal(scale=4.0, size=(50, 5)).astype(np.float32).astype(np.float64)
    labels = ("labels", "INT64", rng.integers(0, 5, 50))
    as_json = body_of([("logits", datatype, raw), labels], binary=False)  # unrounded numbers
    sent = held(raw, datatype)
    assert (datatype == "FP32") == np.array_equal(sent, raw)
    binary = body_of([("logits", datatype, sent), labels], binary=True)
    from_json = outputs_of(await client.post(INFER, content=as_json[0]))
    from_binary = outputs_of(await client.post(INFER, content=binary[0], headers=binary[1]))
    want = reference("logits", [("logits", datatype, sent), labels])
    for name in TERMS:
        np.testing.assert_array_equal(from_json[name], from_binary[name])
        np.testing.assert_allclose(
            from_binary[name], want.columns[name].numpy(), rtol=1e-6, atol=1e-6
        )


# --- each input against score_batch on the same float64 arrays -------------------------------

KINDS = ["logits", "probabilities", "log_probabilities"]


@pytest.mark.anyio
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", ["FP16", "BF16", "FP32", "FP64"])
@pytest.mark.parametrize("kind", KINDS)
async def test_predictions_weights_and_k_dimensional_shapes(client, kind, datatype, binary):
    """(N, C, d1, d2) predictions of each kind and datatype, INT32 labels and FP16 weights:
    the per-sample terms have the labels' shape and equal the core's; so do the weighted
    `reduced` and `ece`."""
    tensors = batch_of(kind, datatype, (6, 4, 3, 2), seed=len(kind) + len(datatype))
    outputs = [{"name": name} for name in (*TERMS, "reduced", "ece")]
    body, headers = body_of(
        tensors, binary=binary, outputs=outputs, parameters={"binary_data_output": binary}
    )
    got = outputs_of(await client.post(INFER, content=body, headers=headers))
    want = reference(kind, tensors)
    assert want.shape == (6, 3, 2)
    for name in TERMS:
        assert got[name].dtype == np.float32
        assert got[name].shape == (6, 3, 2)
        np.testing.assert_allclose(
            got[name].ravel(), want.columns[name].numpy(), rtol=1e-6, atol=1e-6
        )
    np.testing.assert_allclose(got["reduced"], [want.reduced[k] for k in TERMS], rtol=1e-6)
    np.testing.assert_allclose(got["ece"], [want.metrics["ece"]], rtol=1e-6, atol=1e-9)


@pytest.mark.anyio
@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
async def test_half_precision_is_computed_in_float32_and_float64(client, datatype):
    """16-bit predictions are widened, never refused for the default float32 precision; logits
    whose beta * z overflows float16 (65504) are fine."""
    tensors = [
        ("logits", datatype, held([[300.0, -200.0, 0.0], [1000.0, 999.0, 998.0]], datatype)),
        ("labels", "INT64", np.array([1, 2])),
    ]
    for precision in ("float32", "float64"):
        body, _ = body_of(tensors, binary=False, parameters={"precision": precision})
        got = outputs_of(await client.post(INFER, content=body))
        want = reference("logits", tensors, precision=precision)
        np.testing.assert_allclose(
            got["ce"], want.columns["ce"].float().numpy(), rtol=1e-6, atol=1e-6
        )
        assert np.isfinite(got["total"]).all()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("datatype", "number", "largest"),
    [
        ("FP16", 65519.0, 65504.0),
        ("BF16", 3.3961e38, 3.3895313892515355e38),
        ("FP32", 3.4028235e38, 3.4028234663852886e38),  # float32's largest, as it prints
    ],
)
async def test_json_numbers_rounding_to_the_largest_value_are_taken(
    client, datatype, number, largest
):
    tensors = [("logits", datatype, np.array([[number, 0.0]])), ("labels", "INT64", np.array([1]))]
    body, _ = body_of(tensors, binary=False, parameters={"precision": "float64"})
    got = outputs_of(await client.post(INFER, content=body))
    exact = [("logits", "FP64", np.array([[largest, 0.0]])), tensors[1]]
    want = reference("logits", exact, precision="float64")
    assert got["ce"][0] == np.float32(largest) == want.columns["ce"].float().item()


@pytest.mark.anyio
async def test_k_dimensional_ce_is_torch_cross_entropy(client):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 5, 3, 2, 2))
    labels = rng.integers(0, 5, size=(4, 3, 2, 2))
    tensors = [("logits", "FP64", logits), ("labels", "INT64", labels)]
    body, headers = body_of(tensors, binary=True, parameters={"precision": "float64"})
    got = outputs_of(await client.post(INFER, content=body, headers=headers))
    loss = torch.nn.CrossEntropyLoss(reduction="none")
    want = loss(torch.from_numpy(logits), torch.from_numpy(labels)).numpy()
    assert got["ce"].shape == want.shape == (4, 3, 2, 2)
    np.testing.assert_allclose(got["ce"], want, rtol=1e-6)


# --- tritonclient against a real server --------------------------------------------------------


NAMES = {"float16": "FP16", "float32": "FP32", "float64": "FP64", "int64": "INT64"}


def infer_input(name: str, array: np.ndarray, binary: bool) -> triton.InferInput:
    datatype = "BF16" if array.dtype == ml_dtypes.bfloat16 else NAMES[array.dtype.name]
    item = triton.InferInput(name, list(array.shape), datatype)
    return item.set_data_from_numpy(array, binary_data=binary)


TRITON_CASES = [  # (kind, prediction dtype, shape, binary, with sample_weight)
    ("logits", np.float16, (40, 6), True, False),
    ("logits", np.float16, (40, 6), False, True),
    ("logits", ml_dtypes.bfloat16, (40, 6), True, True),  # tritonclient sends BF16 binary only
    ("logits", ml_dtypes.bfloat16, (5, 6, 4, 3), True, False),
    ("probabilities", np.float32, (40, 6), False, True),
    ("probabilities", np.float16, (5, 6, 4, 3), True, True),
    ("log_probabilities", np.float64, (5, 6, 4), False, False),
]


@pytest.mark.parametrize(("kind", "dtype", "shape", "binary", "weighted"), TRITON_CASES)
def test_tritonclient_sends_each_input(triton_client, kind, dtype, shape, binary, weighted):
    tensors = batch_of(kind, "BF16" if dtype == ml_dtypes.bfloat16 else "FP16", shape, seed=4)
    arrays = {name: values for name, _, values in tensors}
    sent = [infer_input(kind, arrays[kind].astype(dtype), binary)]
    sent.append(infer_input("labels", arrays["labels"].astype(np.int64), binary))
    if weighted:
        sent.append(infer_input("sample_weight", arrays["sample_weight"].astype(dtype), binary))
    else:
        tensors = tensors[:2]
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in (*TERMS, "reduced")]
    result = triton_client.infer("fairloss", sent, outputs=outputs)
    tensors[0] = (kind, sent[0].datatype(), tensors[0][2])  # clipped as the dtype sent
    want = reference(kind, tensors)
    for name in TERMS:
        got = result.as_numpy(name)
        assert got.shape == want.shape == (shape[0], *shape[2:])
        np.testing.assert_allclose(got.ravel(), want.columns[name].numpy(), rtol=1e-5, atol=1e-6)
    reduced = [want.reduced[k] for k in TERMS]
    np.testing.assert_allclose(result.as_numpy("reduced"), reduced, rtol=1e-6)


# --- bad inputs: a 400 that says where, and the service keeps serving ---------------------------

LOGITS = ("logits", "FP32", np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]))
LABELS = ("labels", "INT64", np.array([0, 1]))
PROBABILITIES = ("probabilities", "FP16", LOGITS[2])


def bad(*tensors: Tensor, binary: bool = False, **changes: Any) -> tuple[bytes, dict[str, str]]:
    """A request of ``tensors`` whose specs are then changed: ``changes[name]`` updates the
    input called ``name``."""
    body, headers = body_of(list(tensors), binary=binary)
    split = int(headers.get("Inference-Header-Content-Length", len(body)))
    header = orjson.loads(body[:split])
    for spec in header["inputs"]:
        spec.update(changes.get(spec["name"], {}))
    new = orjson.dumps(header)
    headers = {"Inference-Header-Content-Length": str(len(new))} if binary else {}
    return new + body[split:], headers


BAD: list[tuple[str, tuple[bytes, dict[str, str]], str]] = [
    (
        "two prediction inputs",
        bad(LOGITS, PROBABILITIES, LABELS),
        "Expected exactly one of 'logits', 'probabilities' or 'log_probabilities', but got "
        "'logits' and 'probabilities'",
    ),
    (
        "no prediction input",
        bad(LABELS),
        "Field 'logits' is required (or 'probabilities' or 'log_probabilities' instead)",
    ),
    ("no labels", bad(PROBABILITIES), "Field 'labels' is required"),
    (
        "unknown names",
        bad(LOGITS, LABELS, ("targets", "FP32", np.zeros(2)), ("weights", "FP32", np.zeros(2))),
        "Unknown input(s) 'targets', 'weights'; expected logits (or probabilities or "
        "log_probabilities), labels and optionally sample_weight",
    ),
    (
        "an input twice",
        bad(LOGITS, LABELS, LABELS),
        "Input 'labels' is sent more than once; send each input once",
    ),
    (
        "integer probabilities",
        bad(PROBABILITIES, LABELS, probabilities={"datatype": "INT32"}),
        "Input 'probabilities' has datatype 'INT32'; expected FP16, BF16, FP32 or FP64",
    ),
    (
        "integer weights",
        bad(LOGITS, LABELS, ("sample_weight", "INT64", np.array([1, 2]))),
        "Input 'sample_weight' has datatype 'INT64'; expected FP16, BF16, FP32 or FP64",
    ),
    (
        "FP16 labels",
        bad(LOGITS, ("labels", "FP16", np.array([0.0, 1.0]))),
        "Input 'labels' has datatype 'FP16'; expected INT32 or INT64",
    ),
    (
        "log-probabilities of rank 0",
        bad(("log_probabilities", "BF16", np.array(0.0)), LABELS),
        "Input 'log_probabilities' has shape []; expected [N, C] or [N, C, d1, ..., dk], or "
        "[N] binary scores",
    ),
    (
        "labels of rank 0",
        bad(LOGITS, ("labels", "INT32", np.array(1))),
        "Input 'labels' has shape []; expected [N] or [N, d1, ..., dk]",
    ),
    (
        "labels past numpy's 64 dimensions",
        bad(LOGITS, LABELS, labels={"shape": [2] + [1] * 64}),
        "Input 'labels' has 65 dimensions; expected [N] or [N, d1, ..., dk], with at most 64 "
        "dimensions",
    ),
    (
        "weights with a bad shape",
        bad(LOGITS, LABELS, ("sample_weight", "FP32", np.ones(2)), sample_weight={"shape": "2"}),
        "Input 'sample_weight' has shape '2'; expected the labels' shape, [N] or [N, d1, ..., dk]",
    ),
    (
        "K-dim labels not matching",
        bad(
            ("logits", "FP16", np.zeros((2, 3, 4))),
            ("labels", "INT64", np.zeros((2, 5)).astype(int)),
        ),
        "Expected labels of shape [2, 4], but got [2, 5]",
    ),
    (
        "weights of another shape",
        bad(LOGITS, LABELS, ("sample_weight", "BF16", np.ones(3))),
        "Expected sample_weight of the labels' shape [2], but got [3]",
    ),
    (
        "K-dim weights of the predictions' shape",
        bad(
            ("logits", "FP16", np.zeros((2, 3, 4))),
            ("labels", "INT64", np.zeros((2, 4)).astype(int)),
            ("sample_weight", "FP16", np.zeros((2, 3, 4))),
            binary=True,
        ),
        "Expected sample_weight of the labels' shape [2, 4], but got [2, 3, 4]",
    ),
    (
        "negative weight",
        bad(LOGITS, LABELS, ("sample_weight", "FP16", np.array([1.0, -1.0])), binary=True),
        "Expected finite weights >= 0, but sample_weight[1] is -1.0",
    ),
    (
        "FP16 binary size mismatch",
        bad(
            ("logits", "FP16", LOGITS[2]),
            LABELS,
            binary=True,
            logits={"parameters": {"binary_data_size": 24}},
        ),
        "Input 'logits' has binary_data_size 24; FP16 [2, 3] takes 12 bytes",
    ),
    (
        "BF16 weights size mismatch",
        bad(
            LOGITS,
            LABELS,
            ("sample_weight", "BF16", np.ones(2)),
            binary=True,
            sample_weight={"shape": [3]},
        ),
        "Input 'sample_weight' has binary_data_size 4; BF16 [3] takes 6 bytes",
    ),
    (
        "FP16 infinity",
        bad(("logits", "FP16", np.array([[0.0, np.inf], [0.0, 1.0]])), LABELS, binary=True),
        "Expected finite numbers, but logits[0][1] is inf",
    ),
    (
        "BF16 NaN",
        bad(
            ("log_probabilities", "BF16", np.array([[0.0, np.nan]])),
            ("labels", "INT64", np.zeros(1, dtype=np.int64)),
            binary=True,
        ),
        "Expected finite numbers, but log_probabilities[0][1] is nan",
    ),
    (
        "FP16 too large as JSON",
        bad(LOGITS, LABELS, logits={"datatype": "FP16", "data": [7e4, 0, 0, 0, 0, 0]}),
        "Input 'logits' holds a value too large for FP16",
    ),
    (
        "FP16 rounding to infinity as JSON",
        bad(LOGITS, LABELS, logits={"datatype": "FP16", "data": [0, 0, 0, 0, 0, -65520]}),
        "Input 'logits' holds a value too large for FP16",
    ),
    (
        "BF16 too large as JSON",
        bad(LOGITS, LABELS, logits={"datatype": "BF16", "data": [3.4e38, 0, 0, 0, 0, 0]}),
        "Input 'logits' holds a value too large for BF16",
    ),
    (
        "booleans among the weights",
        bad(
            LOGITS,
            LABELS,
            ("sample_weight", "FP32", np.ones(2)),
            sample_weight={"data": [1.0, True]},
        ),
        "Input 'sample_weight' (FP32) must hold numbers in its 'data' array",
    ),
    (
        "probabilities not summing to 1",
        bad(("probabilities", "BF16", np.array([[0.5, 0.25], [0.5, 0.5]])), LABELS),
        "Expected each sample of probabilities to sum to 1 over the classes (within 0.001), but "
        "the sample at probabilities[0] sums to 0.75",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("request_", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_inputs_get_a_400_that_says_where(client, request_, message):
    body, headers = request_
    response = await client.post(INFER, content=body, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": message}
    good, _ = body_of([LOGITS, LABELS], binary=False)
    assert (await client.post(INFER, content=good)).status_code == 200


SAME_FAULT = [  # /score's fields, and the faulty JSON body of the same arrays
    {"logits": [[0.5, 0.5]], "probabilities": [[0.5, 0.5]], "labels": [0]},
    {"labels": [0]},
    {"logits": [[0.5, 0.5]]},
    {"logits": [[0.5, 0.5]], "labels": [0], "sample_weight": [1.0, 1.0]},
    {"logits": [[0.5, 0.5]], "labels": [0], "sample_weight": [-2.0]},
    {"logits": [[[0.5], [0.5]]], "labels": [[0, 1]]},
    {"log_probabilities": [[0.0, -1.0]], "labels": [0]},
    {"probabilities": [[0.5, 0.5]], "labels": [2]},
]


@pytest.mark.anyio
@pytest.mark.parametrize("fields", SAME_FAULT)
async def test_a_fault_is_worded_as_score_words_it(client, fields):
    score = await client.post("/score", json=fields)
    assert score.status_code == 422
    datatypes = {"labels": "INT64"}
    tensors = [(k, datatypes.get(k, "FP32"), np.asarray(v)) for k, v in fields.items()]
    body, _ = body_of(tensors, binary=False)
    infer = await client.post(INFER, content=body)
    assert infer.status_code == 400
    assert infer.json() == {"error": score.json()["detail"]}
