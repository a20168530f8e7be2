"""Stripe's error responses, as the emulator gives them: status, `error.type`, `code`, `param`, `message`.

The messages follow the ones Stripe's API returns for the same refusal; `doc_url` is set where
Stripe documents the code (https://docs.stripe.com/error-codes).
"""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API answers with, in Stripe's shape."""

    def __init__(self, status: int, type_: str, message: str, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        error: dict[str, Any] = {"type": type_, "message": message}
        if code:
            error["code"] = code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        error.update({k: v for k, v in extra.items() if v is not None})
        self.body = {"error": error}

    @property
    def code(self) -> str | None:
        return self.body["error"].get("code")


def invalid(message: str, param: str | None = None, code: str | None = None, status: int = 400) -> ApiError:
    return ApiError(status, "invalid_request_error", message, code, param=param)


def missing(object_id: str, kind: str, param: str = "id", status: int = 404) -> ApiError:
    """No such object: 404 for the id in the URL, 400 for one named by a parameter (as Stripe does)."""
    return ApiError(status, "invalid_request_error", f"No such {kind}: '{object_id}'", "resource_missing",
                    param=param)


def unknown_parameter(param: str) -> ApiError:
    return invalid(f"Received unknown parameter: {param}", param, "parameter_unknown")


def missing_parameter(param: str) -> ApiError:
    return invalid(f"Missing required param: {param}.", param, "parameter_missing")


def empty_parameter(param: str) -> ApiError:
    return invalid(f"You passed an empty string for '{param}'. We assume empty values are an attempt to unset a "
                   f"parameter; however '{param}' cannot be unset. You should remove '{param}' from your request "
                   "or supply a non-empty value.", param, "parameter_invalid_empty")


def one_of(values: list[Any]) -> str:
    words = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
    if len(words) <= 2:
        return " or ".join(words)
    return ", ".join(words[:-1]) + ", or " + words[-1]


def not_emulated(param: str, operation: str) -> ApiError:
    """A parameter Stripe accepts here but the emulator does not model: refused, never silently ignored."""
    return invalid(f"The Stripe emulator does not implement {param} on {operation} (Stripe accepts it; "
                   "teach billing/emulator what it does before the gateway sends it).", param)


def card_error(message: str, code: str, decline_code: str | None = None, param: str | None = None) -> ApiError:
    return ApiError(402, "card_error", message, code, decline_code=decline_code, param=param)
