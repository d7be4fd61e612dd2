"""nbmodelhub: git for deep-learning models, inside Jupyter."""

from nbmodelhub.api import FileEntry, Repository, TensorInfo, Version, open, run
from nbmodelhub.errors import (
    ConcurrentUpdate,
    CorruptObject,
    ModelHubError,
    NotARepository,
    ReadOnlyRepository,
    RefNotFound,
    UsageError,
)
from nbmodelhub.store.backend import default_location

__version__ = "0.1.0"

__all__ = [
    "ConcurrentUpdate",
    "CorruptObject",
    "FileEntry",
    "ModelHubError",
    "NotARepository",
    "ReadOnlyRepository",
    "RefNotFound",
    "Repository",
    "TensorInfo",
    "UsageError",
    "Version",
    "default_location",
    "open",
    "run",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext nbmodelhub``: registers the ``%dlv`` magic."""
    from nbmodelhub.magics import load_ipython_extension as load

    load(ipython)
