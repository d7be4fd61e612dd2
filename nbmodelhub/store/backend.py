"""A synchronous face over a zarr v3 ``Store``: the only place that talks to zarr's key-value layer.

Everything above this module speaks in keys and bytes. Any zarr store works (local folder,
memory, fsspec/obstore object storage); nothing here assumes a local filesystem, and the one
primitive beyond get/set/delete/list that the repository needs is zarr's atomic
``set_if_not_exists`` (O_EXCL on disk, If-None-Match on object storage).
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zarr
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, MemoryStore

from nbmodelhub.errors import NotARepository, ReadOnlyRepository, UsageError

_PROTOTYPE = default_buffer_prototype()

# memory:// repositories live as long as the process; the same name opens the same repository.
_MEMORY_STORES: dict[str, MemoryStore] = {}


def default_location() -> str:
    """``$MODELHUB_PATH``, else ``~/.modelhub`` (DESIGN.md §2)."""
    return os.environ.get("MODELHUB_PATH") or str(Path.home() / ".modelhub")


def open_zarr_store(location: str | os.PathLike[str] | Store | None, read_only: bool) -> Store:
    """Turn a path, URL or ready-made zarr store into a zarr ``Store``."""
    if isinstance(location, Store):
        return location
    text = default_location() if location is None else os.fspath(location)
    if not text.strip():
        raise UsageError("empty repository location: give a folder path or a URL such as memory://scratch")
    if text.startswith("memory://"):
        store = _MEMORY_STORES.setdefault(text, MemoryStore())
        return store.with_read_only(True) if read_only else store
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        # Object storage and other URLs go through zarr's own machinery (fsspec).
        try:
            return zarr.storage.FsspecStore.from_url(text, read_only=read_only)
        except ImportError as exc:
            raise UsageError(f"cannot open {text}: {exc}; install fsspec and the filesystem's package") from exc
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise NotARepository(f"{path} is a file, not a repository folder: give a folder path")
    if read_only and not path.exists():
        raise NotARepository(f"no repository at {path}: create it with `dlv init {path}`")
    return LocalStore(path, read_only=read_only)


def _wrap_write_error(store: Store, exc: BaseException) -> BaseException:
    if isinstance(exc, ValueError) and "read-only" in str(exc):
        return ReadOnlyRepository(f"the repository at {describe(store)} is read-only: open it writable, or copy it")
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES)):
        return ReadOnlyRepository(
            f"cannot write to the repository at {describe(store)} ({exc.strerror}): "
            "check its permissions or open a writable copy"
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return ReadOnlyRepository(f"no space left on the device holding {describe(store)}: free some space and retry")
    return exc


def describe(store: Store) -> str:
    if isinstance(store, LocalStore):
        return str(store.root)
    for name, known in _MEMORY_STORES.items():
        if known is store or getattr(store, "_store_dict", None) is known._store_dict:
            return name
    return str(store)


class Backend:
    """Blocking get/set/list over a zarr store; thread-safe (calls run on zarr's event loop)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Stored bytes of chunks read so far: what approximate and progressive reads report.
        self.bytes_read = 0
        self._count_lock = threading.Lock()

    @property
    def read_only(self) -> bool:
        return bool(self.store.read_only)

    @property
    def location(self) -> str:
        return describe(self.store)

    def get(self, key: str) -> bytes | None:
        buf = sync(self.store.get(key, prototype=_PROTOTYPE))
        return None if buf is None else buf.to_bytes()

    def get_buffer(self, key: str) -> Any:
        """A chunk's bytes as a numpy uint8 view, without the copy ``get`` makes (chunks are big)."""
        buf = sync(self.store.get(key, prototype=_PROTOTYPE))
        if buf is None:
            return None
        with self._count_lock:
            self.bytes_read += len(buf)
        return buf.as_numpy_array()

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        async def fetch() -> list[Any]:
            return await asyncio.gather(*(self.store.get(k, prototype=_PROTOTYPE) for k in keys))

        return [None if b is None else b.to_bytes() for b in sync(fetch())]

    def get_buffers(self, keys: list[str]) -> list[Any]:
        """Several chunks at once (one trip to the event loop), as ``get_buffer`` gives them."""

        async def fetch() -> list[Any]:
            return await asyncio.gather(*(self.store.get(k, prototype=_PROTOTYPE) for k in keys))

        out = [None if b is None else b.as_numpy_array() for b in sync(fetch())]
        with self._count_lock:
            self.bytes_read += sum(len(b) for b in out if b is not None)
        return out

    def set_many(self, items: list[tuple[str, bytes]]) -> None:
        """Write several keys concurrently; none is meant to be seen before all are (the caller orders that)."""

        async def put() -> None:
            await asyncio.gather(*(self.store.set(k, _PROTOTYPE.buffer.from_bytes(v)) for k, v in items))

        self._write(put())

    def exists(self, key: str) -> bool:
        return bool(sync(self.store.exists(key)))

    def set(self, key: str, value: bytes) -> None:
        self._write(self.store.set(key, _PROTOTYPE.buffer.from_bytes(value)))

    def create(self, key: str, value: bytes) -> bool:
        """Write ``value`` at ``key`` only if absent; True if this call created it.

        zarr's ``set_if_not_exists`` does not say who won, so the caller's value must be unique
        (refs carry a random token) and we read back to find out.
        """
        self._write(self.store.set_if_not_exists(key, _PROTOTYPE.buffer.from_bytes(value)))
        return self.get(key) == value

    def delete(self, key: str) -> None:
        self._write(self.store.delete(key))

    def delete_prefix(self, prefix: str) -> None:
        self._write(self.store.delete_dir(prefix.rstrip("/")))

    def list_dir(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (a folder-like key ending in '/')."""

        async def collect() -> list[str]:
            return [name async for name in self.store.list_dir(prefix)]

        try:
            return sorted(sync(collect()))
        except FileNotFoundError:
            return []

    def list_prefix(self, prefix: str) -> Iterator[str]:
        async def collect() -> list[str]:
            return [key async for key in self.store.list_prefix(prefix)]

        yield from sorted(sync(collect()))

    def _write(self, coro: Any) -> None:
        try:
            sync(coro)
        except Exception as exc:
            wrapped = _wrap_write_error(self.store, exc)
            if wrapped is exc:
                raise
            raise wrapped from exc
