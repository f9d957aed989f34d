"""The documented shapes of the Open Inference Protocol's bodies, for ``/openapi.json``.

Documentation only: `service.oip` reads requests itself (unknown parameters are taken and
named, binary tensors follow the JSON header), so these models say what a generated client
should send and what it gets back, in the protocol's words (KServe's V2 REST data model).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.oip import OUTPUTS
from service.oip_dtypes import FLOATS, INTEGERS
from service.oip_tensors import INPUT_NAMES

Datatype = Literal["FP16", "BF16", "FP32", "FP64", "INT32", "INT64"]
InputName = Literal["logits", "probabilities", "log_probabilities", "labels", "sample_weight"]
OutputName = Literal["ce", "penalty", "total", "reduced", "ece", "intervals"]
# the documented names are the ones the protocol's code takes
assert set(Datatype.__args__) == {*FLOATS, *INTEGERS}  # type: ignore[attr-defined]
assert InputName.__args__ == INPUT_NAMES  # type: ignore[attr-defined]
assert OutputName.__args__ == tuple(OUTPUTS)  # type: ignore[attr-defined]


class InferInputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: InputName
    shape: list[Annotated[int, Field(ge=0)]] = Field(
        description="predictions [N, C] (or [N, C, d1, ..., dk], or [N] binary scores); labels "
        "and sample_weight the predictions' shape without C"
    )
    datatype: Datatype = Field(description="floats for predictions and weights, INT for labels")
    parameters: dict[str, Any] | None = Field(
        None,
        description="binary_data_size: the tensor's bytes after the JSON header; other "
        "parameters are taken and named in the answer's parameters.ignored",
    )
    data: list[Any] | None = Field(
        None, description="the elements, flat or nested, row-major; absent when sent binary"
    )


class InferRequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: OutputName
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data: true for this output as binary data (default false)"
    )


class InferenceRequest(BaseModel):
    """The JSON body, or the JSON header of a binary request (Inference-Header-Content-Length
    bytes, then each binary input's bytes in the order of ``inputs``)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="echoed in the answer")
    model_name: str | None = Field(None, description="if given, the path's model")
    model_version: str | None = Field(None, description="if given, '1'")
    parameters: dict[str, Any] | None = Field(
        None,
        description="binary_data_output (outputs not listed come as binary data), the scoring "
        "options of /score, bootstrap and row_offset; others are taken and named in the "
        "answer's parameters.ignored",
    )
    inputs: list[InferInputTensor] = Field(
        description="one of logits, probabilities and log_probabilities; labels; optionally "
        "sample_weight"
    )
    outputs: list[InferRequestedOutput] | None = Field(
        None,
        min_length=1,
        description="the outputs wanted, each once, in this order (default ce, penalty and total)",
    )


class InferOutputTensor(BaseModel):
    name: OutputName
    datatype: Literal["FP32", "FP64"]
    shape: list[int]
    parameters: dict[str, int] | None = Field(
        None, description="binary_data_size, for an output sent as binary data"
    )
    data: list[float | None] | None = Field(
        None, description="row-major elements (null for a mean over no weight)"
    )


class IgnoredParameters(BaseModel):
    ignored: list[str] = Field(
        description="the parameters taken but not known, as 'parameters.KEY', "
        "'inputs.NAME.parameters.KEY' or 'outputs.NAME.parameters.KEY' (the first 100)"
    )


class InferenceResponse(BaseModel):
    model_name: str
    id: str | None = None
    parameters: IgnoredParameters | None = None
    outputs: list[InferOutputTensor]


class ProtocolError(BaseModel):
    error: str


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    optional: bool | None = None


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
