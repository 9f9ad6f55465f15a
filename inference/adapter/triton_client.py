"""The one place that speaks to Triton: a shared `tritonclient.grpc.aio` client for one embedding model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

# gRPC statuses that mean "Triton (or the model) cannot serve now, try again later" -> 503.
# NOT_FOUND: the model is not loaded (e.g. being reloaded); everything else is a server-side failure.
UNAVAILABLE_STATUSES = frozenset(
    f"StatusCode.{name}" for name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "NOT_FOUND")
)
PROBE_TIMEOUT_S = 1.0


class TritonUnavailable(Exception):
    """Triton is unreachable, not ready or too slow: answered as 503 with Retry-After."""


class TritonFailure(Exception):
    """Triton answered with an error for a valid request (a model or server fault): answered as 500."""


@dataclass(frozen=True)
class Embedding:
    vector: np.ndarray  # (dim,) float32, unit L2 norm
    tokens: int  # tokens the model actually used (after truncation)


def device_from_config(config: dict[str, Any]) -> str:
    """'cpu' or 'cuda:N' from a model config (JSON form of get_model_config) by its first instance group."""
    groups = config.get("instance_group") or [{}]
    kind = groups[0].get("kind", "KIND_CPU")
    if kind == "KIND_GPU":
        gpus = groups[0].get("gpus") or [0]
        return f"cuda:{gpus[0]}"
    return "cpu" if kind == "KIND_CPU" else kind.removeprefix("KIND_").lower()


def _raise_mapped(exc: InferenceServerException) -> NoReturn:
    # A crashed python-backend stub answers INTERNAL "Stub process ... is not healthy" while the model
    # still reads READY; the launcher reloads it, so clients should retry, not see a 500.
    stub_down = "is not healthy" in (exc.message() or "")
    if exc.status() in UNAVAILABLE_STATUSES or stub_down:
        raise TritonUnavailable(f"Triton: {exc.message()}") from None
    raise TritonFailure(f"Triton {exc.status()}: {exc.message()}") from None


class TritonEmbedder:
    """Embeds one text per call; Triton's dynamic batcher merges concurrent calls into batches."""

    def __init__(self, url: str, model: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.inflight = 0  # requests sent to Triton and not answered yet (one event loop: no lock)
        self._client: InferenceServerClient | None = None
        self._device: str | None = None
        self._outputs = [InferRequestedOutput("EMBEDDING"), InferRequestedOutput("TOKENS")]

    async def start(self) -> None:
        # The channel connects lazily, so this succeeds while Triton is still down.
        self._client = InferenceServerClient(self.url)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> InferenceServerClient:
        if self._client is None:
            raise TritonUnavailable("Triton client is not started")
        return self._client

    async def embed(self, text: str) -> Embedding:
        text_input = InferInput("TEXT", [1, 1], "BYTES")
        text_input.set_data_from_numpy(np.array([[text.encode("utf-8")]], dtype=np.object_))
        self.inflight += 1
        try:
            result = await self.client.infer(
                self.model, [text_input], outputs=self._outputs, client_timeout=self.timeout_s
            )
        except InferenceServerException as exc:
            _raise_mapped(exc)
        finally:
            self.inflight -= 1
        vector = result.as_numpy("EMBEDDING")
        tokens = result.as_numpy("TOKENS")
        if vector is None or tokens is None:
            raise TritonFailure("Triton response lacks EMBEDDING or TOKENS")
        return Embedding(vector=vector[0], tokens=int(tokens.reshape(-1)[0]))

    async def ready(self) -> bool:
        """Whether the model is loaded and ready; any failure to ask counts as not ready."""
        try:
            ok = bool(await self.client.is_model_ready(self.model, client_timeout=PROBE_TIMEOUT_S))
        except (InferenceServerException, TritonUnavailable):
            ok = False
        if not ok:
            self._device = None  # the model may come back with another instance group
        return ok

    async def device(self) -> str | None:
        """The loaded model's device ('cpu', 'cuda:0'), cached; None when Triton cannot tell us."""
        if self._device is None:
            try:
                response = await self.client.get_model_config(
                    self.model, as_json=True, client_timeout=PROBE_TIMEOUT_S
                )
            except (InferenceServerException, TritonUnavailable):
                return None
            self._device = device_from_config(response.get("config", {}))
        return self._device
