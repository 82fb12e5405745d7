"""One exception type for every client error; the app factory turns it (and every HTTP error) into JSON."""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def json_body(request, *, expect=dict):
    """The request's JSON body, or ApiError 415/400 saying what is wrong with it."""
    if not request.is_json:
        raise ApiError(415, "request body must be JSON (Content-Type: application/json)")
    data = request.get_json(silent=True)
    if data is None:
        raise ApiError(400, "request body is not valid JSON")
    if not isinstance(data, expect):
        raise ApiError(400, f"request body must be a JSON {'object' if expect is dict else expect.__name__}")
    return data
