"""Exception classes of the simulated boxlite 0.10.8 SDK.

Same names, hierarchy and ``code`` values as ``boxlite.errors`` in the real
SDK: every failure the (simulated) native runtime reports is a subclass of
``_NativeError`` (itself a ``BoxliteError`` and a ``RuntimeError``) whose
message is ``"<prefix><detail>"``.
"""

__all__ = [
    "AlreadyExistsError",
    "BoxliteError",
    "ConfigError",
    "DatabaseError",
    "EngineError",
    "ExecError",
    "ExecutionError",
    "ImageError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidStateError",
    "MetadataError",
    "NetworkError",
    "NotFoundError",
    "ParseError",
    "ResourceExhaustedError",
    "SessionReapedError",
    "StoppedError",
    "StorageError",
    "TimeoutError",
    "UnsupportedError",
    "UpstreamUnavailableError",
]


class BoxliteError(Exception):
    """Root of every boxlite exception."""


class ExecError(BoxliteError):
    """A command run by a convenience wrapper exited non-zero."""

    def __init__(self, command: str, exit_code: int, stderr: str):
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(f"Command '{command}' failed with exit code {exit_code}: {stderr}")


class TimeoutError(BoxliteError):  # noqa: A001 - same name as the SDK's
    """An operation of a convenience wrapper timed out (not the builtin)."""


class ParseError(BoxliteError):
    """Output of a convenience wrapper could not be parsed."""


class _NativeError(BoxliteError, RuntimeError):
    """Failure reported by the runtime; ``code`` is the machine-readable class."""

    code: str = "internal"
    prefix: str = "internal error: "

    @classmethod
    def make(cls, detail: str) -> "_NativeError":
        """Build the exception with the SDK's ``<prefix><detail>`` message."""
        return cls(f"{cls.prefix}{detail}")


class InvalidArgumentError(_NativeError):
    """The runtime refused a value."""

    code = "invalid_argument"
    prefix = "invalid argument: "


class UnsupportedError(_NativeError):
    """Not available on this runtime."""

    code = "unsupported"
    prefix = "unsupported: "


class NotFoundError(_NativeError):
    """The named resource does not exist."""

    code = "not_found"
    prefix = "not found: "


class SessionReapedError(_NativeError):
    """The session was reaped."""

    code = "session_reaped"
    prefix = "session reaped: "


class AlreadyExistsError(_NativeError):
    """The resource already exists."""

    code = "already_exists"
    prefix = "already exists: "


class InvalidStateError(_NativeError):
    """The resource's state forbids this."""

    code = "invalid_state"
    prefix = "invalid state: "


class StoppedError(_NativeError):
    """The box or runtime has stopped."""

    code = "stopped"
    prefix = "stopped: "


class ImageError(_NativeError):
    """An image could not be pulled or read."""

    code = "image_pull_failed"
    prefix = "images error: "


class ExecutionError(_NativeError):
    """A process could not be run."""

    code = "execution_failed"
    prefix = "Execution error: "


class ResourceExhaustedError(_NativeError):
    """A limit was reached."""

    code = "resource_exhausted"
    prefix = "resource exhausted: "


class NetworkError(_NativeError):
    """The network was unavailable."""

    code = "network_unavailable"
    prefix = "network error: "


class UpstreamUnavailableError(_NativeError):
    """A dependency did not answer."""

    code = "upstream_unavailable"
    prefix = "upstream unavailable: "


class EngineError(_NativeError):
    """The virtualization engine failed."""

    code = "engine_unavailable"
    prefix = "engine reported an error: "


class StorageError(_NativeError):
    """Runtime storage failed."""

    code = "storage_error"
    prefix = "storage error: "


class DatabaseError(_NativeError):
    """The runtime database failed."""

    code = "database_error"
    prefix = "database error: "


class MetadataError(_NativeError):
    """Stored metadata was unreadable."""

    code = "metadata_error"
    prefix = "metadata error: "


class ConfigError(_NativeError):
    """The configuration is invalid."""

    code = "config_error"
    prefix = "configuration error: "


class InternalError(_NativeError):
    """An internal runtime error."""

    code = "internal"
    prefix = "internal error: "
