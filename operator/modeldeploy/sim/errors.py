"""Kubernetes-style API errors raised by the emulator's pure helpers."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error that the emulator renders as a ``kind: Status`` response with this HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(message: str) -> ApiError:
    # 422 is what kopf and kubectl expect for validation and failed JSON-patch tests.
    return ApiError(422, "Invalid", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def conflict(message: str, details: dict[str, Any] | None = None) -> ApiError:
    return ApiError(409, "Conflict", message, details)
