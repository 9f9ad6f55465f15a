"""Pydantic models for the OpenAPI docs only (/docs, /redoc); requests are parsed in validation.py."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class EmbedRequest(BaseModel):
    input_text: str = Field(min_length=1, description="Text to embed (not blank)", examples=["Hello, world!"])


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbedResponse(BaseModel):
    embedding: list[float] = Field(description="L2-normalised fp32 vector (384 floats for MiniLM-L6)")
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
    inflight_batches: int = Field(description="Triton requests in flight from this adapter")


class HealthResponse(BaseModel):
    status: Literal["healthy", "degraded"]
    gateway_version: str
    inference_service: InferenceStatus


class ReadyResponse(BaseModel):
    status: Literal["ready"]
