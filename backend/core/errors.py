"""Domain errors. Services raise them; handlers turn them into a polite message
(``t(err.key, **err.params)``) and API routes into JSON errors."""
from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, key: str, **params):
        super().__init__(key)
        self.key = key  # i18n key, e.g. "disputes.err_description_short"
        self.params = params


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Unavailable(DomainError):
    """Served by another replica (or not at all right now): try again, e.g. through the proxy."""
    status = 503
    code = "unavailable"
