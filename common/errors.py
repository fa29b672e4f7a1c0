"""Exceptions shared by every backend and the harnesses."""


class RnnbenchError(Exception):
    """Base class: an error whose message tells the user what to do."""


class NotSupported(RnnbenchError):
    """A backend cannot compute this combination (a dtype, a GRU variant in a built-in).

    Adapters raise it instead of silently skipping or running something else; the harnesses
    show its message as "not supported" in their tables. The message should quote the
    framework's own error text where there is one.
    """


class BackendUnavailable(RnnbenchError, ImportError):
    """The framework behind a backend is not installed; the message names the extra."""


class DeviceUnavailable(RnnbenchError):
    """The device asked for is not there for this framework (no GPU, a CPU-only build).

    The harnesses show it as "no device" beside the install or driver hint in its message; it
    is not a failure of anything that ran.
    """


class UnknownBackend(RnnbenchError, ValueError):
    """A backend name that the registry does not know."""


class DataError(RnnbenchError, ValueError):
    """Bad or unusable input data (corrupt download, corpus too small, unknown token)."""
