"""The Open Inference Protocol (KServe V2 / Triton) for FairLoss: request bytes in, response out.

Tensors come as JSON ``data`` (flat or nested) or, with the binary tensor data extension, as raw
little-endian bytes after a JSON header of ``Inference-Header-Content-Length`` bytes; binary
tensors are read with ``numpy.frombuffer`` in place. Errors are `ProblemError`s; the v2 router
writes them as the protocol's ``{"error": ...}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import torch

import fairloss
from fairloss import fair_loss_terms
from fairloss.headers import header_int
from service.errors import ProblemError
from service.payload import FLOAT32_MAX, SEND_MORE, parse_object
from service.scoring import DTYPES, FAIRLOSS_TERMS, class_weights, device_for, parse_options

MODEL = "fairloss"
HEADER_LENGTH = "inference-header-content-length"
INPUT_TYPES = {"logits": {"FP32": "<f4", "FP64": "<f8"}, "labels": {"INT32": "<i4", "INT64": "<i8"}}
INPUT_RANKS = {"logits": 2, "labels": 1}
LOSS_PARAMETERS = frozenset(
    {
        "smooth_max_beta",
        "scaling_factor",
        "label_smoothing",
        "ignore_index",
        "class_weights",
        "device",
        "precision",
    }
)
REQUEST_KEYS = frozenset({"id", "inputs", "outputs", "parameters"})
INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
OUTPUT_KEYS = frozenset({"name", "parameters"})

SERVER_METADATA: dict[str, Any] = {
    "name": "fairloss-service",
    "version": fairloss.__version__,
    "extensions": ["binary_tensor_data"],
}
MODEL_METADATA: dict[str, Any] = {
    "name": MODEL,
    "platform": "pytorch",
    "inputs": [
        {"name": "logits", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "labels", "datatype": "INT64", "shape": [-1]},
    ],
    "outputs": [{"name": name, "datatype": "FP32", "shape": [-1]} for name in FAIRLOSS_TERMS],
}


def bad_request(detail: str) -> ProblemError:
    return ProblemError(400, "Bad request", detail)


@dataclass(frozen=True)
class Answer:
    body: bytes
    header_length: int | None
    n: int
    num_classes: int
    device: str


def infer(
    body: bytearray, header_length: str | None, devices: list[str], default: str, max_elements: int
) -> Answer:
    """``POST /v2/models/fairloss/infer``: request bytes to response bytes."""
    split = _split(body, header_length)
    header = body if split == len(body) else bytes(body[:split])
    request = _object(parse_object(header), "The request", REQUEST_KEYS)
    if not isinstance(request.get("id", ""), str):
        raise bad_request("'id' must be a string")
    parameters = _object(request.get("parameters", {}), "Request parameters", None)
    binary_default = parameters.pop("binary_data_output", False)
    if type(binary_default) is not bool:
        raise bad_request("Parameter 'binary_data_output' must be a boolean")
    unknown = sorted(set(parameters) - LOSS_PARAMETERS)
    if unknown:
        raise bad_request(
            f"Unknown parameter(s) {', '.join(map(repr, unknown))}; this model takes "
            f"{', '.join(sorted(LOSS_PARAMETERS))} and binary_data_output"
        )
    options = parse_options(parameters)
    outputs = _requested_outputs(request.get("outputs"), binary_default)
    tensors = _inputs(request, body, split, max_elements)
    logits, labels = tensors["logits"], tensors["labels"]
    if labels.shape[0] != logits.shape[0]:
        raise bad_request(
            f"Input 'labels' has shape {list(labels.shape)}; expected [{logits.shape[0]}], "
            "one label per row of 'logits'"
        )
    _check_logits(logits, float32=options.precision == "float32")
    device = device_for(options, devices, default)
    z = torch.from_numpy(logits).to(device=device, dtype=DTYPES[options.precision])
    weight = class_weights(options, logits.shape[1])
    try:
        terms = fair_loss_terms(
            z,
            torch.from_numpy(labels).to(device),
            smooth_max_beta=options.smooth_max_beta,
            scaling_factor=options.scaling_factor,
            weight=weight,
            label_smoothing=options.label_smoothing,
            ignore_index=options.ignore_index,
        )
    except (ValueError, TypeError) as exc:
        raise bad_request(str(exc)) from None
    if not bool(terms.total.isfinite().all()):
        raise bad_request(
            "These parameters give non-finite losses; use smaller smooth_max_beta or "
            "scaling_factor, or precision float64"
        )
    results = {name: getattr(terms, name).to(torch.float32).cpu().numpy() for name in outputs}
    batch = (logits.shape[0], logits.shape[1], str(z.device))
    return _response(request.get("id"), results, outputs, batch)


def _split(body: bytearray, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    split = header_int(header_length)
    if split is None or split > len(body):
        raise bad_request(
            f"Inference-Header-Content-Length is {header_length!r}; expected a number of bytes "
            f"no larger than the body ({len(body)} bytes)"
        )
    return split


def _object(value: Any, what: str, keys: frozenset[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object")
    if keys is not None and (unknown := sorted(set(value) - keys)):
        raise bad_request(
            f"{what} has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(sorted(keys))}"
        )
    return dict(value)


def _requested_outputs(value: Any, binary_default: bool) -> dict[str, bool]:
    """Output name to whether it is sent as binary; all three when ``outputs`` is absent."""
    if value is None:
        return dict.fromkeys(FAIRLOSS_TERMS, binary_default)
    if not isinstance(value, list) or not value:
        raise bad_request("'outputs' must be a non-empty array of {name, parameters} objects")
    chosen: dict[str, bool] = {}
    for k, item in enumerate(value):
        output = _object(item, f"outputs[{k}]", OUTPUT_KEYS)
        name = output.get("name")
        if name not in FAIRLOSS_TERMS or name in chosen:
            raise bad_request(
                f"outputs[{k}] names {name!r}; expected one of {', '.join(FAIRLOSS_TERMS)}, "
                "each at most once"
            )
        parameters = _object(output.get("parameters", {}), f"outputs[{k}].parameters", None)
        binary = parameters.pop("binary_data", binary_default)
        if type(binary) is not bool or parameters:
            raise bad_request(
                f"outputs[{k}].parameters may hold only 'binary_data', a boolean; "
                f"got {sorted(output.get('parameters', {}))}"
            )
        chosen[name] = binary
    return chosen


def _inputs(
    request: dict[str, Any], body: bytearray, split: int, max_elements: int
) -> dict[str, np.ndarray]:
    value = request.get("inputs")
    if not isinstance(value, list):
        raise bad_request("'inputs' must be an array of tensors named 'logits' and 'labels'")
    names = [item.get("name") if isinstance(item, dict) else None for item in value]
    if sorted(map(str, names)) != sorted(INPUT_RANKS):
        raise bad_request(f"Expected the inputs 'logits' and 'labels', once each, but got {names}")
    booleans = _data_may_hold_booleans(body, split, request)
    offset = split
    tensors: dict[str, np.ndarray] = {}
    for item in value:
        spec = _object(item, "An input", INPUT_KEYS)
        tensor, offset = _input(spec, body, offset, booleans, max_elements)
        tensors[item["name"]] = tensor
    if offset != len(body):
        raise bad_request(
            f"The inputs' binary_data_size add up to {offset - split} bytes, but "
            f"{len(body) - split} bytes follow the JSON header"
        )
    return tensors


def _input(
    spec: dict[str, Any], body: bytearray, offset: int, booleans: bool, max_elements: int
) -> tuple[np.ndarray, int]:
    name = spec["name"]
    dtypes = INPUT_TYPES[name]
    datatype = spec.get("datatype")
    if datatype not in dtypes:
        raise bad_request(
            f"Input {name!r} has datatype {datatype!r}; expected {' or '.join(dtypes)}"
        )
    dtype = np.dtype(dtypes[datatype])
    shape = _shape(name, spec.get("shape"))
    count = math.prod(shape)
    if count > max_elements:
        raise bad_request(
            f"Input {name!r} has {count} elements, more than this server's limit of "
            f"{max_elements}. To send more: {SEND_MORE}; or raise FAIRLOSS_MAX_ELEMENTS."
        )
    parameters = _object(spec.get("parameters", {}), f"Input {name!r} parameters", None)
    size = parameters.pop("binary_data_size", None)
    if parameters:
        raise bad_request(
            f"Input {name!r} has unknown parameter(s) {sorted(parameters)}; "
            "expected only binary_data_size"
        )
    if (size is None) == ("data" not in spec):
        raise bad_request(f"Input {name!r} needs either 'data' or binary_data_size, not both")
    if size is not None:
        if type(size) is not int or size != count * dtype.itemsize:
            raise bad_request(
                f"Input {name!r} has binary_data_size {size!r}; {datatype} {shape} takes "
                f"{count * dtype.itemsize} bytes"
            )
        if offset + size > len(body):
            raise bad_request(
                f"Input {name!r} needs {size} bytes of binary data; only "
                f"{len(body) - offset} are left in the body"
            )
        array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
        if not array.flags.aligned:
            array = array.copy()
        return array.reshape(shape), offset + size
    return _json_data(name, datatype, shape, spec["data"], booleans), offset


def _shape(name: str, value: Any) -> list[int]:
    rank = INPUT_RANKS[name]
    if (
        not isinstance(value, list)
        or len(value) != rank
        or any(type(d) is not int or d < 0 for d in value)
    ):
        expected = "[N, C]" if rank == 2 else "[N]"
        raise bad_request(f"Input {name!r} has shape {value!r}; expected {expected}")
    if value[0] == 0 or (rank == 2 and value[1] < 2):
        raise bad_request(
            f"Input {name!r} has shape {value}; expected at least one sample and 2 classes"
        )
    return value


def _json_data(name: str, datatype: str, shape: list[int], data: Any, booleans: bool) -> np.ndarray:
    kinds = "fi" if name == "logits" else "i"
    try:
        array = np.asarray(data)
    except ValueError:
        array = np.asarray([None])
    if not isinstance(data, list) or array.dtype.kind not in kinds or (booleans and _bool_in(data)):
        if name == "labels" and _integers_past_int64(array):
            raise bad_request(f"Input 'labels' holds a value too large for {datatype}")
        wanted = "numbers" if name == "logits" else "integers"
        raise bad_request(f"Input {name!r} ({datatype}) must hold {wanted} in its 'data' array")
    if array.size != math.prod(shape):
        raise bad_request(
            f"Input {name!r} holds {array.size} values in 'data'; shape {shape} takes "
            f"{math.prod(shape)}"
        )
    if datatype == "FP32" and (np.abs(array) > FLOAT32_MAX).any():
        raise bad_request(f"Input {name!r} holds a value too large for FP32")
    if datatype == "INT32" and ((array < -(2**31)) | (array >= 2**31)).any():
        raise bad_request(f"Input {name!r} holds a value too large for INT32")
    return array.astype(np.float64 if name == "logits" else np.int64, copy=False).reshape(shape)


def _integers_past_int64(array: np.ndarray) -> bool:
    """Whether every value is an integer and one lies outside int64. Integer literals past 64
    bits parse as floats (rounded to at or past the bounds) or as Python ints."""
    values = array.ravel().tolist()
    integers = all(type(v) is int or (type(v) is float and v.is_integer()) for v in values)
    return integers and any(
        not -(2**63) <= v < 2**63 if type(v) is int else abs(v) >= 2**63 for v in values
    )


def _data_may_hold_booleans(body: bytearray, split: int, request: dict[str, Any]) -> bool:
    """Whether any input's ``data`` may hold ``true``/``false`` (numpy reads them as 1 and 0).

    The header's ``true``/``false`` tokens are counted against the booleans outside ``data``;
    only when they differ (or a string holds those words) does a Python scan of the data run.
    """
    tokens = body.count(b"true", 0, split) + body.count(b"false", 0, split)
    if tokens == 0:
        return False
    outside = 0
    pending: list[Any] = [{k: v for k, v in request.items() if k != "inputs"}]
    pending.extend({k: v for k, v in i.items() if k != "data"} for i in request["inputs"])
    while pending:
        item = pending.pop()
        if isinstance(item, bool):
            outside += 1
        elif isinstance(item, str):
            if "true" in item or "false" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return tokens != outside


def _bool_in(data: list[Any]) -> bool:
    pending: list[Any] = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif type(item) is bool:
            return True
    return False


def _check_logits(logits: np.ndarray, *, float32: bool) -> None:
    finite = np.isfinite(logits)
    if not finite.all():
        k = int(np.argmin(finite.reshape(-1)))
        raise bad_request(
            f"Input 'logits' must hold finite numbers, but element {k} (row {k // logits.shape[1]}"
            f") is {logits.reshape(-1)[k]}"
        )
    if float32 and logits.dtype == np.float64 and (np.abs(logits) > FLOAT32_MAX).any():
        raise bad_request(
            "Input 'logits' holds a value too large for float32; set the parameter "
            "precision to float64"
        )


def _response(
    request_id: Any,
    results: dict[str, np.ndarray],
    binary: dict[str, bool],
    batch: tuple[int, int, str],
) -> Answer:
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, values in results.items():
        output: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(values.shape)}
        if binary[name]:
            output["parameters"] = {"binary_data_size": values.nbytes}
            chunks.append(values.astype("<f4", copy=False).tobytes())
        else:
            output["data"] = values
        outputs.append(output)
    response: dict[str, Any] = {"model_name": MODEL, "outputs": outputs}
    if request_id is not None:
        response["id"] = request_id
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return Answer(header, None, *batch)
    return Answer(b"".join([header, *chunks]), len(header), *batch)
