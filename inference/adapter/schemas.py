"""Pydantic models for the OpenAPI docs only (/docs, /redoc); requests are parsed without pydantic."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class EmbedRequest(BaseModel):
    input_text: str = Field(min_length=1, description="Text to embed (not blank)", examples=["Hello, world!"])


class Usage(BaseModel):
    prompt_tokens: int = Field(description="tokens the model used (inputs are truncated to its maximum)")
    total_tokens: int


class EmbedResponse(BaseModel):
    embedding: list[float] = Field(description="L2-normalised fp32 vector (384 floats for MiniLM-L6)")
    model: str
    usage: Usage


class EmbeddingsRequest(BaseModel):
    """OpenAI's `POST /v1/embeddings` request."""

    input: str | list[str] = Field(description="a text, or an array of texts (order is kept in `data`)")
    model: str = Field(examples=["sentence-transformers/all-MiniLM-L6-v2"])
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="base64: little-endian float32 bytes, as OpenAI sends them"
    )
    dimensions: int | None = Field(default=None, description="only the model's own width is accepted")
    user: str | None = Field(default=None, description="accepted and ignored")


class EmbeddingObject(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingObject]
    model: str
    usage: Usage


class ErrorBody(BaseModel):
    error: str
    detail: str
    code: str


class InferenceStatus(BaseModel):
    status: Literal["healthy", "unavailable"]
    model: str
    device: str = Field(description="'cpu', 'cuda:0', or 'unknown' while Triton has not answered")
    queue_size: int = Field(description="requests waiting in Triton (nv_inference_pending_request_count)")
    inflight_batches: int = Field(description="requests this adapter has sent to Triton, not yet answered")


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded"]
    gateway_version: str
    inference_service: InferenceStatus


class ReadyResponse(BaseModel):
    status: Literal["ready"]
