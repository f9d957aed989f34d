"""The Open Inference Protocol (KServe V2 / Triton) for FairLoss: request bytes in, response out.

Tensors come as JSON ``data`` (flat or nested) or, with the binary tensor data extension, as raw
little-endian bytes after a JSON header of ``Inference-Header-Content-Length`` bytes; binary
tensors are read with ``numpy.frombuffer`` in place (`service.oip_tensors` reads them: one of
``logits``, ``probabilities``, ``log_probabilities``, then ``labels`` and ``sample_weight``).
The per-sample outputs have the labels' shape; JSON ``data`` is sent flat, in row-major order.
Errors are `ProblemError`s; the v2 router
writes them as the protocol's ``{"error": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

import fairloss
from fairloss.bootstrap import CRITERIA
from fairloss.errors import text_fault
from fairloss.options import OPTION_NAMES, ScoringOptions
from fairloss.scoring import TERMS, BatchScores, score_batch
from fairloss.uncertainty import intervals
from fairloss_wire.answers import header_int, number
from service.errors import echoed, said
from service.memory import Reserve, no_reserve, reserve_parsed
from service.oip_tensors import PARAMETERS, bad_request, json_object, read_inputs
from service.payload import parse_reserved
from service.resampling import (
    REQUEST_FIELDS,
    Resampling,
    parse_resampling,
)

MODEL = "fairloss"
VERSIONS = ("1",)  # the versions a client may name, in a path or as model_version
HEADER_LENGTH = "inference-header-content-length"
# Outputs: the per-sample terms (FP32, the labels' shape: [N] or [N, d1, ..., dk]), sent when
# `outputs` is absent; and on request, the terms reduced as the `reduction` parameter says (FP64,
# [3]: ce, penalty, total) and the ECE over `ece_bins` bins (FP64, [1]).
# With the `bootstrap` parameter (an object, as on /score) and `row_offset`, also `intervals`
# (FP64, [9, 3]: estimate, low, high of each of `INTERVAL_ROWS`; NaN where none).
OUTPUTS = {**dict.fromkeys(TERMS, "FP32"), "reduced": "FP64", "ece": "FP64", "intervals": "FP64"}
WIRE_DTYPES = {"FP32": "<f4", "FP64": "<f8"}
# model_name and model_version: KServe's client sends them in the body as well as the path.
REQUEST_KEYS = frozenset({"id", "model_name", "model_version", "inputs", "outputs", "parameters"})
OUTPUT_KEYS = frozenset({"name", "parameters"})
IGNORED_SHOWN = 100  # parameters named as ignored, at most

SERVER_METADATA: dict[str, Any] = {
    "name": "fairloss-service",
    "version": fairloss.__version__,
    "extensions": ["binary_tensor_data"],
}
# The V2 metadata gives each tensor one datatype and one shape: FP32 stands for FP16, BF16, FP32
# or FP64, INT64 for INT32 or INT64; [-1, -1] for [N, C] with any trailing d1, ..., dk, and [-1]
# for the labels' shape. Send one of logits, probabilities and log_probabilities (logits is the
# one not marked optional); sample_weight is optional, as KServe and Triton mark it.
MODEL_METADATA: dict[str, Any] = {
    "name": MODEL,
    "versions": list(VERSIONS),
    "platform": "pytorch",
    "inputs": [
        {"name": "logits", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1], "optional": True},
        {"name": "log_probabilities", "datatype": "FP32", "shape": [-1, -1], "optional": True},
        {"name": "labels", "datatype": "INT64", "shape": [-1]},
        {"name": "sample_weight", "datatype": "FP32", "shape": [-1], "optional": True},
    ],
    "outputs": [
        *({"name": name, "datatype": "FP32", "shape": [-1]} for name in TERMS),
        {"name": "reduced", "datatype": "FP64", "shape": [3]},
        {"name": "ece", "datatype": "FP64", "shape": [1]},
        {"name": "intervals", "datatype": "FP64", "shape": [len(CRITERIA), 3]},
    ],
}


@dataclass(frozen=True)
class Answer:
    body: bytes
    header_length: int | None
    n: int
    num_classes: int
    device: str


def infer(
    body: bytearray,
    header_length: str | None,
    default_device: str,
    max_elements: int,
    reserve: Reserve = no_reserve,
) -> Answer:
    """``POST /v2/models/fairloss/infer``: request bytes to response bytes; ``reserve`` as for
    `service.json_codec.score_body`."""
    split = _split(body, header_length)
    header = body if split == len(body) else bytes(body[:split])
    request = json_object(
        parse_reserved(header, reserve), "The request", REQUEST_KEYS, REQUEST_KEYS - {"inputs"}
    )
    if not isinstance(request.get("id", ""), str):
        raise bad_request("'id' must be a string")
    if (fault := text_fault(request.get("id", ""))) is not None:  # the answer echoes it
        raise bad_request(f"'id' must be text, but {fault}")
    for key in ("model_name", "model_version"):
        if not isinstance(request.get(key, ""), str):
            raise bad_request(f"'{key}' must be a string")
    if request.get("model_name", MODEL) != MODEL:
        raise bad_request(f"The request names model {request['model_name']!r}; this is {MODEL!r}")
    if request.get("model_version", VERSIONS[0]) not in VERSIONS:
        raise bad_request(
            f"The request names version {request['model_version']!r}; {MODEL!r} has {VERSIONS[0]!r}"
        )
    parameters = json_object(request.get("parameters", {}), "Request parameters", None)
    binary_default = parameters.pop("binary_data_output", False)
    if type(binary_default) is not bool:
        raise bad_request("Parameter 'binary_data_output' must be a boolean")
    # Parameters that are not options are taken and named in the response, as KServe and
    # Triton take them, so that a misspelt option still shows.
    known = {*OPTION_NAMES, *REQUEST_FIELDS}
    ignored = [f"parameters.{echoed(key)}" for key in sorted(set(parameters) - known)]
    parameters = {key: value for key, value in parameters.items() if key in known}
    resampling = parse_resampling(parameters)
    options = ScoringOptions(**{k: v for k, v in parameters.items() if k in OPTION_NAMES})
    outputs, ignored_outputs = _requested_outputs(request.get("outputs"), binary_default)
    tensors = read_inputs(request, body, split, max_elements)
    ignored += [*tensors.ignored, *ignored_outputs]
    bootstrap = resampling.bootstrap if "intervals" in outputs else None
    labels = tensors.labels
    reserve_parsed(reserve, labels.size, 1, bootstrap, labels.shape[0], options.ece_bins)
    batch = score_batch(
        tensors.predictions,
        tensors.labels,
        options,
        kind=tensors.kind,
        sample_weight=tensors.sample_weight,
        default_device=default_device,
        rules="ece" in outputs or "intervals" in outputs,  # the terms need the loss alone
        bootstrap=bootstrap,
        row_offset=resampling.row_offset,
    )
    if "intervals" in outputs and batch.sums.replicates is None:
        raise bad_request("Output 'intervals' needs the parameter 'bootstrap'")
    results = {name: _output(batch, name, resampling) for name in outputs}
    return _response(
        request.get("id"), results, outputs, ignored, (batch.n, batch.num_classes, batch.device)
    )


def _output(batch: BatchScores, name: str, resampling: Resampling) -> np.ndarray:
    if name == "reduced":
        return np.array([number(v) for v in batch.reduced.values()], dtype=np.float64)
    if name == "ece":
        return np.array([number(batch.metrics["ece"])], dtype=np.float64)
    if name == "intervals" and resampling.bootstrap is not None:  # `infer` checked it's there
        found = intervals(batch.sums, resampling.bootstrap.confidence_level)
        rows = [[found[c][k] for k in ("estimate", "low", "high")] for c in CRITERIA]
        return np.array([[np.nan if v is None else v for v in row] for row in rows])
    return batch.columns[name].float().cpu().numpy().reshape(batch.shape)


def _split(body: bytearray, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    split = header_int(header_length)
    if split is None or split > len(body):
        raise bad_request(
            f"Inference-Header-Content-Length is {header_length!r}; expected a number of bytes "
            f"no larger than the body ({len(body)} bytes)"
        )
    if split == 0:  # Triton's raw binary request: the body is one input's bytes, no header
        raise bad_request(
            "Inference-Header-Content-Length is 0: a raw binary request, the body one input's "
            "bytes; this model takes two inputs or three (logits, probabilities or "
            "log_probabilities, labels, sample_weight), so send a JSON header that names them"
        )
    return split


def _requested_outputs(value: Any, binary_default: bool) -> tuple[dict[str, bool], list[str]]:
    """Output name to whether it is sent as binary, and the output parameters ignored.

    Without ``outputs``, the three terms, binary as ``binary_data_output`` says; a listed
    output follows its own ``binary_data`` (JSON when it has none), as KServe and Triton do.
    """
    if value is None:
        return dict.fromkeys(TERMS, binary_default), []
    if not isinstance(value, list) or not value:
        raise bad_request("'outputs' must be a non-empty array of {name, parameters} objects")
    chosen: dict[str, bool] = {}
    ignored: list[str] = []
    for k, item in enumerate(value):
        output = json_object(item, f"outputs[{k}]", OUTPUT_KEYS, PARAMETERS)
        name = output.get("name")
        if name not in OUTPUTS or name in chosen:
            raise bad_request(
                f"outputs[{k}] names {said(name)}; expected one of {', '.join(OUTPUTS)}, "
                "each at most once"
            )
        parameters = json_object(output.get("parameters", {}), f"outputs[{k}].parameters", None)
        binary = parameters.pop("binary_data", False)
        if type(binary) is not bool:
            raise bad_request(f"outputs[{k}].parameters.binary_data must be a boolean")
        chosen[name] = binary
        ignored += (f"outputs.{name}.parameters.{echoed(key)}" for key in sorted(parameters))
    return chosen, ignored


def _response(
    request_id: Any,
    results: dict[str, np.ndarray],
    binary: dict[str, bool],
    ignored: list[str],
    batch: tuple[int, int, str],
) -> Answer:
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, values in results.items():
        datatype = OUTPUTS[name]
        output: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
        if binary[name]:
            output["parameters"] = {"binary_data_size": values.nbytes}
            chunks.append(values.astype(WIRE_DTYPES[datatype], copy=False).tobytes())
        else:
            output["data"] = values.ravel()
        outputs.append(output)
    response: dict[str, Any] = {"model_name": MODEL, "outputs": outputs}
    if request_id is not None:
        response["id"] = request_id
    if len(ignored) > IGNORED_SHOWN:  # as an echoed value is cut short
        ignored = [*ignored[:IGNORED_SHOWN], f"... ({len(ignored):,} in all)"]
    if ignored:
        response["parameters"] = {"ignored": ignored}
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return Answer(header, None, *batch)
    return Answer(b"".join([header, *chunks]), len(header), *batch)
