"""One exception root for signalement; every rejection reason is an error code."""

from __future__ import annotations


class SignalementError(Exception):
    """Root of every error this project raises on purpose."""


class RejectedError(SignalementError):
    """An input refused by the pipeline; `code` goes to `referrals.rejected`."""

    code = "INVALID"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class BadAvroError(RejectedError):
    code = "BAD_AVRO"


class SchemaUnknownError(RejectedError):
    code = "SCHEMA_UNKNOWN"


class InvalidFieldError(RejectedError):
    code = "INVALID_FIELD"


class ConfigError(SignalementError):
    """A configuration file or variable is wrong; raised at start-up, never later."""


class StackError(SignalementError):
    """The local stack (Kafka, ClickHouse) failed to start, stop or answer."""
