"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with its status codes.

Clients (the ``openai`` package, simonw/llm, editors) read ``error.message`` and raise by status:
400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 413, 415, 429/503 with
Retry-After (the client retries), 500 InternalServerError, 507 (the server's disk is full or
read-only) InternalServerError too.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    507: "server_error",
}


class ApiError(Exception):
    """A request the server refuses, with what the client should know to fix it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400: the request's body says something the server cannot do."""
    return ApiError(400, message, param=param, code=code)
