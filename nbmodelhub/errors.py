"""The errors users see. Each carries one line that says what went wrong and what to do next.

Front doors (CLI, magics) print ``str(error)`` and nothing else for these; anything that is not
a ``ModelHubError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class ModelHubError(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1


class UsageError(ModelHubError):
    """The request itself is malformed (bad name, bad argument, unsupported object)."""

    exit_code = 2


class RefNotFound(ModelHubError):
    """A version reference that names nothing in the repository."""


class NotARepository(ModelHubError):
    """The location exists but does not hold an nbmodelhub repository."""


class ReadOnlyRepository(ModelHubError):
    """A write was asked of a repository opened (or mounted) read-only."""


class CorruptObject(ModelHubError):
    """A stored object does not match its content hash, or is missing or unreadable."""


class ConcurrentUpdate(ModelHubError):
    """A compare-and-swap kept losing against other writers."""


class StorageError(ModelHubError):
    """The storage behind a repository or hub refused or failed a request (credentials, network)."""


class DiskFull(StorageError):
    """The device holding a repository ran out of space mid-write; nothing half-written is visible."""
