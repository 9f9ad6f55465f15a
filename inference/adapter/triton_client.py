"""The one place that speaks to Triton: a shared `tritonclient.grpc.aio` client for one embedding model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import numpy as np
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.grpc.service_pb2 import ModelInferRequest
from tritonclient.grpc.service_pb2_grpc import GRPCInferenceServiceStub
from tritonclient.utils import InferenceServerException

INT32_MAX = 2**31 - 1
# The client's defaults (no message size cap), plus a short reconnect backoff: after Triton restarts,
# gRPC's default backoff (up to 120 s) would keep answering 503 long after Triton is back.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", INT32_MAX),
    ("grpc.max_receive_message_length", INT32_MAX),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# gRPC statuses that mean "Triton (or the model) cannot serve now, try again later" -> 503.
# NOT_FOUND: the model is not loaded (e.g. being reloaded); everything else is a server-side failure.
UNAVAILABLE_STATUSES = frozenset(
    f"StatusCode.{name}" for name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "NOT_FOUND")
)
OVERLOAD_MARKERS = (
    "Exceeds maximum queue size",
    "StatusCode.RESOURCE_EXHAUSTED",
    "StatusCode.DEADLINE_EXCEEDED",
)
PROBE_TIMEOUT_S = 1.0


class TritonUnavailable(Exception):
    """Triton is unreachable, not ready, or overloaded: answered as 503 with Retry-After."""

    def __init__(self, reason: str, overloaded: bool = False) -> None:
        super().__init__(reason)
        self.overloaded = overloaded  # a full queue clears in about a second; a restart takes longer


class TritonFailure(Exception):
    """Triton answered with an error for a valid request (a model or server fault): answered as 502."""


@dataclass(frozen=True)
class ModelInfo:
    device: str  # 'cpu' or 'cuda:N'
    max_batch_size: int  # 0: the model takes one text per request
    dim: int  # embedding width


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (n, dim) float32, unit L2 norm, in input order
    tokens: np.ndarray  # (n,) tokens the model actually used per text (after truncation)


def device_from_config(config: dict[str, Any]) -> str:
    """'cpu' or 'cuda:N' from a model config (JSON form of get_model_config) by its first instance group."""
    groups = config.get("instance_group") or [{}]
    kind = groups[0].get("kind", "KIND_CPU")
    if kind == "KIND_GPU":
        gpus = groups[0].get("gpus") or [0]
        return f"cuda:{gpus[0]}"
    return "cpu" if kind == "KIND_CPU" else kind.removeprefix("KIND_").lower()


def info_from_config(config: dict[str, Any], output: str = "EMBEDDING") -> ModelInfo:
    dims = next((o.get("dims", []) for o in config.get("output", []) if o.get("name") == output), [])
    return ModelInfo(
        device=device_from_config(config),
        max_batch_size=int(config.get("max_batch_size", 0)),
        dim=int(dims[-1]) if dims else 0,
    )


def _raise_mapped(exc: InferenceServerException) -> NoReturn:
    _raise_status(str(exc.status()), exc.message() or "")


def _raise_status(status: str, message: str) -> NoReturn:
    """TritonUnavailable (503) or TritonFailure (502) for a failed call's gRPC status and message."""
    # A crashed python-backend stub answers INTERNAL "Stub process ... is not healthy" while the model
    # still reads READY; the launcher reloads it, so clients should retry, not see a 502.
    if status in UNAVAILABLE_STATUSES or "is not healthy" in message:
        text = f"{status} {message}"
        raise TritonUnavailable(f"Triton: {text}", overloaded=any(m in text for m in OVERLOAD_MARKERS))
    raise TritonFailure(f"Triton {status}: {message}")


def bytes_tensor(texts: Sequence[str]) -> bytes:
    """Triton's BYTES tensor wire format: each element as a 4-byte little-endian length + UTF-8."""
    parts = []
    for text in texts:
        data = text.encode("utf-8")
        parts += [len(data).to_bytes(4, "little"), data]
    return b"".join(parts)


OUTPUT_DTYPES = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16}


def chunks(count: int, size: int) -> list[tuple[int, int]]:
    """[start, end) ranges of at most `size` covering range(count); size 0 means one item each."""
    step = max(size, 1)
    return [(start, min(start + step, count)) for start in range(0, count, step)]


class TritonConnection:
    """One shared `tritonclient.grpc.aio` channel, opened at app start and closed at shutdown."""

    url: str
    _client: InferenceServerClient | None = None

    _channel: grpc.aio.Channel | None = None
    _stub: GRPCInferenceServiceStub | None = None

    async def start(self) -> None:
        # The channels connect lazily, so this succeeds while Triton is still down. Inference goes
        # over its own channel with the generated stub; probes and config through tritonclient.
        self._client = InferenceServerClient(self.url, channel_args=CHANNEL_ARGS)
        self._channel = grpc.aio.insecure_channel(self.url, options=CHANNEL_ARGS)
        self._stub = GRPCInferenceServiceStub(self._channel)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._channel is not None:
            await self._channel.close()
            self._channel, self._stub = None, None

    @property
    def stub(self) -> GRPCInferenceServiceStub:
        if self._stub is None:
            raise TritonUnavailable("Triton client is not started")
        return self._stub

    @property
    def client(self) -> InferenceServerClient:
        if self._client is None:
            raise TritonUnavailable("Triton client is not started")
        return self._client


class TritonEmbedder(TritonConnection):
    """Texts in, vectors out. A list goes to Triton as one request per `max_batch_size` chunk (fewer
    round trips than one per text); Triton's dynamic batcher merges them with other clients' requests."""

    # The model's tensor names (inference/model_repository/embedder/config.pbtxt).
    text_input = "TEXT"
    embedding_output = "EMBEDDING"
    tokens_output = "TOKENS"

    def __init__(self, url: str, model: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.inflight = 0  # requests sent to Triton and not answered yet (one event loop: no lock)
        self._client: InferenceServerClient | None = None
        self._info: ModelInfo | None = None
        self._requested = [
            ModelInferRequest.InferRequestedOutputTensor(name=self.embedding_output),
            ModelInferRequest.InferRequestedOutputTensor(name=self.tokens_output),
        ]

    async def embed(self, texts: Sequence[str], batched: bool = True) -> Embeddings:
        """Embeddings for `texts` in order. `batched` False sends one request per text (for comparison)."""
        if len(texts) == 1:
            return await self._infer(texts, batched=True)  # one [1, 1] request: no config lookup needed
        size = (await self.info()).max_batch_size if batched else 1
        parts = await asyncio.gather(
            *(self._infer(texts[a:b], size > 0) for a, b in chunks(len(texts), size))
        )
        return Embeddings(
            vectors=np.concatenate([p.vectors for p in parts]),
            tokens=np.concatenate([p.tokens for p in parts]),
        )

    async def _infer(self, texts: Sequence[str], batched: bool) -> Embeddings:
        """One ModelInfer call built and read straight from the protobufs: tritonclient's InferInput
        / InferResult wrappers cost more Python per request than the rest of the call."""
        request = ModelInferRequest(
            model_name=self.model,
            inputs=[
                ModelInferRequest.InferInputTensor(
                    name=self.text_input, datatype="BYTES", shape=[len(texts), 1] if batched else [1]
                )
            ],
            outputs=self._requested,
            raw_input_contents=[bytes_tensor(texts)],
        )
        self.inflight += 1
        try:
            response = await self.stub.ModelInfer(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            _raise_status(str(exc.code()), exc.details() or "")
        finally:
            self.inflight -= 1
        found = {}
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=False):
            dtype = OUTPUT_DTYPES.get(output.datatype)
            if dtype is not None:
                found[output.name] = np.frombuffer(raw, dtype=dtype)
        vectors, tokens = found.get(self.embedding_output), found.get(self.tokens_output)
        if vectors is None or tokens is None:
            raise TritonFailure(f"Triton response lacks {self.embedding_output} or {self.tokens_output}")
        return Embeddings(vectors=vectors.reshape(len(texts), -1), tokens=tokens.reshape(-1))

    async def info(self) -> ModelInfo:
        """The loaded model's device, batch limit and width (cached until the model is seen not ready)."""
        if self._info is None:
            try:
                response = await self.client.get_model_config(
                    self.model, as_json=True, client_timeout=PROBE_TIMEOUT_S
                )
            except InferenceServerException as exc:
                _raise_mapped(exc)
            self._info = info_from_config(response.get("config", {}), self.embedding_output)
        return self._info

    async def ready(self) -> bool:
        """Whether the model is loaded and ready; any failure to ask counts as not ready."""
        try:
            ok = bool(await self.client.is_model_ready(self.model, client_timeout=PROBE_TIMEOUT_S))
        except (InferenceServerException, TritonUnavailable):
            ok = False
        if not ok:
            self._info = None  # the model may come back with another config
        return ok

    async def device(self) -> str | None:
        """The loaded model's device ('cpu', 'cuda:0'); None when Triton cannot tell us."""
        try:
            return (await self.info()).device
        except (TritonUnavailable, TritonFailure):
            return None
