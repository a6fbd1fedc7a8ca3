"""OpenAI-shaped errors: every non-2xx answer is {"error": {...}}."""

from __future__ import annotations

from typing import Dict, Optional

from pydantic import ValidationError
from starlette.responses import JSONResponse

_DEFAULT_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "overloaded"),
    504: ("server_error", "upstream_timeout"),
}


class OpenAIHTTPError(Exception):
    """An error answered to the client in OpenAI's error shape."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: Optional[str] = None,
        param: Optional[str] = None,
        code: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
    ):
        super().__init__(message)
        default_type, default_code = _DEFAULT_TYPES.get(status_code, ("server_error", None))
        self.status_code = status_code
        self.message = message
        self.type = type or default_type
        self.param = param
        self.code = code or default_code
        self.headers = headers or {}

    def body(self) -> Dict[str, Dict[str, Optional[str]]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def to_response(self, request_id: Optional[str] = None) -> JSONResponse:
        headers = dict(self.headers)
        if request_id:
            headers["x-request-id"] = request_id
        return JSONResponse(self.body(), status_code=self.status_code, headers=headers)


def internal_error(request_id: str) -> OpenAIHTTPError:
    # Deliberately generic: details stay in the server log under the request id.
    return OpenAIHTTPError(
        500, f"The server had an internal error while processing request {request_id}; retry or report the id."
    )


def describe_validation_error(exc: ValidationError) -> OpenAIHTTPError:
    """First pydantic error as a 400 naming the field (never echoing input)."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid body"}
    loc = ".".join(str(p) for p in first.get("loc", ()) if p not in ("function-after",))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    where = f"field '{loc}'" if loc else "the request body"
    return OpenAIHTTPError(400, f"Invalid {where}: {message}. Fix the request body and retry.", param=loc or None)
