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
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import zarr
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, MemoryStore

from nbmodelhub.errors import DiskFull, NotARepository, ReadOnlyRepository, StorageError, UsageError

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
    if "\x00" in text:  # the OS refuses it with a bare ValueError deep in pathlib
        raise UsageError(f"repository location {text!r} contains a NUL character: give a folder path or a URL")
    if text.startswith("memory://"):
        store = _MEMORY_STORES.setdefault(text, MemoryStore())
        return store.with_read_only(True) if read_only else store
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        return _open_url(text, read_only)
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise NotARepository(f"{path} is a file, not a repository folder: give a folder path")
    if read_only and not path.exists():
        raise NotARepository(f"no repository at {path}: create it with `dlv init {path}`")
    return LocalStore(path, read_only=read_only)


# Object storage goes through obstore (its conditional writes are real If-None-Match requests);
# credentials come from the standard places (AWS_*, GOOGLE_*, AZURE_* variables, ~/.aws, instance
# roles) and are never passed through our code, so they cannot end up in a message.
_OBSTORE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "adl"})
# A web server is a read-only hub (HTTP has no conditional create, so refs could not be safe); it is
# read through fsspec, which lists folders from the server's index pages (nginx, python -m http.server).
_WEB_SCHEMES = frozenset({"http", "https"})


def redact(url: str) -> str:
    """A URL fit for messages: user:password@ removed, query string (signatures, tokens) dropped."""
    return re.sub(r"^([a-z0-9+.-]+://)[^/@]*@", r"\1", url.split("?", 1)[0], flags=re.I)


def _open_url(url: str, read_only: bool) -> Store:
    scheme = url.split("://", 1)[0].lower()
    if scheme in _OBSTORE_SCHEMES:
        try:
            import obstore.store
        except ImportError:
            pass
        else:
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT") or ""
            # A plain-http endpoint (a local S3 server) is an explicit choice by whoever set it.
            plain_http = scheme in ("s3", "s3a") and endpoint.startswith("http://")
            retry: Any = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}
            try:
                store = obstore.store.from_url(
                    url, retry_config=retry, client_options={"allow_http": True} if plain_http else None
                )
            except Exception as exc:  # obstore raises its own error types for bad URLs and configs
                raise UsageError(f"cannot open {redact(url)}: {_first_line(exc)}") from exc
            return zarr.storage.ObjectStore(store, read_only=read_only)
    try:
        return zarr.storage.FsspecStore.from_url(url, read_only=read_only or scheme in _WEB_SCHEMES)
    except ImportError as exc:
        raise UsageError(f"cannot open {redact(url)}: {exc}; install nbmodelhub[hub] (obstore)") from exc
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot open {redact(url)}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _http_status(exc: BaseException) -> str:
    """'403 Forbidden, AccessDenied' out of an object-store error, without URLs or headers."""
    text = str(exc)
    status = re.search(r"status code: (\d{3}[ A-Za-z]*)", text)
    code = re.search(r"<Code>(\w+)</Code>", text)
    parts = [p for p in (status and status.group(1).strip(), code and code.group(1)) if p]
    lowered = text.lower()
    for needle, said in (
        ("connection refused", "connection refused"),
        ("dns error", "host not found"),
        ("timed out", "timed out"),
        ("connect error", "cannot connect"),
    ):
        if not parts and needle in lowered:
            parts.append(said)
    return ", ".join(parts) or type(exc).__name__


def _storage_error(store: Store, exc: BaseException, writing: bool) -> BaseException:
    """Object-storage failures as one clear line; anything else unchanged."""
    kind = type(exc).__name__
    if not type(exc).__module__.startswith("obstore"):
        return exc
    where = describe(store)
    if kind in ("PermissionDeniedError", "UnauthenticatedError"):
        if writing:
            return ReadOnlyRepository(
                f"{where} is read-only for you: the storage refused a write ({_http_status(exc)}); "
                "use credentials with write access (AWS_*/GOOGLE_*/AZURE_* variables or your cloud profile)"
            )
        return StorageError(
            f"{where} refused access ({_http_status(exc)}): check your credentials "
            "(AWS_*/GOOGLE_*/AZURE_* variables or your cloud profile)"
        )
    if kind == "NotFoundError":
        return NotARepository(f"nothing at {where} (does the bucket exist?): check the URL")
    return StorageError(f"the storage at {where} failed a request ({_http_status(exc)}): check the URL and retry")


def _wrap_write_error(store: Store, exc: BaseException) -> BaseException:
    wrapped = _storage_error(store, exc, writing=True)
    if wrapped is not exc:
        return wrapped
    if isinstance(exc, ValueError) and "read-only" in str(exc):
        return ReadOnlyRepository(f"the repository at {describe(store)} is read-only: open it writable, or copy it")
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES)):
        return ReadOnlyRepository(
            f"cannot write to the repository at {describe(store)} ({exc.strerror}): "
            "check its permissions or open a writable copy"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # What the failed write left is unreferenced (visible last), so gc can take it back.
        return DiskFull(
            f"the disk holding {describe(store)} is full ({exc.strerror}): free some space, "
            "then `dlv gc` removes what the failed write left behind"
        )
    return exc


def describe(store: Store) -> str:
    if isinstance(store, LocalStore):
        return str(store.root)
    if isinstance(store, zarr.storage.FsspecStore):
        protocol = store.fs.protocol
        scheme = protocol[0] if isinstance(protocol, (tuple, list)) else protocol
        path = store.path if "://" in store.path else f"{scheme}://{store.path}"
        return redact(path)
    if isinstance(store, zarr.storage.ObjectStore):
        return _object_store_url(store.store)
    for name, known in _MEMORY_STORES.items():
        if known is store or getattr(store, "_store_dict", None) is known._store_dict:
            return name
    return str(store)


def _object_store_url(inner: Any) -> str:
    scheme = {"S3Store": "s3", "GCSStore": "gs", "AzureStore": "az"}.get(type(inner).__name__)
    config = getattr(inner, "config", {}) or {}
    bucket = config.get("bucket") or config.get("container_name")
    if scheme is None or bucket is None:
        return str(inner)
    prefix = str(getattr(inner, "prefix", None) or "")
    return f"{scheme}://{bucket}/{prefix}".rstrip("/")


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
        buf = self._read(self.store.get(key, prototype=_PROTOTYPE))
        return None if buf is None else buf.to_bytes()

    def get_buffer(self, key: str) -> Any:
        """A chunk's bytes as a numpy uint8 view, without the copy ``get`` makes (chunks are big)."""
        buf = self._read(self.store.get(key, prototype=_PROTOTYPE))
        if buf is None:
            return None
        with self._count_lock:
            self.bytes_read += len(buf)
        return buf.as_numpy_array()

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        async def fetch() -> list[Any]:
            return await asyncio.gather(*(self.store.get(k, prototype=_PROTOTYPE) for k in keys))

        return [None if b is None else b.to_bytes() for b in self._read(fetch())]

    def get_buffers(self, keys: list[str]) -> list[Any]:
        """Several chunks at once (one trip to the event loop), as ``get_buffer`` gives them."""

        async def fetch() -> list[Any]:
            return await asyncio.gather(*(self.store.get(k, prototype=_PROTOTYPE) for k in keys))

        out = [None if b is None else b.as_numpy_array() for b in self._read(fetch())]
        with self._count_lock:
            self.bytes_read += sum(len(b) for b in out if b is not None)
        return out

    def set_many(self, items: list[tuple[str, bytes]]) -> None:
        """Write several keys concurrently; none is meant to be seen before all are (the caller orders that)."""

        async def put() -> None:
            await asyncio.gather(*(self.store.set(k, _PROTOTYPE.buffer.from_bytes(v)) for k, v in items))

        self._write(put())

    def exists(self, key: str) -> bool:
        return bool(self._read(self.store.exists(key)))

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
        """Delete everything under ``prefix``, and a key named ``prefix`` itself.

        The name can be a file: a local write killed midway leaves ``zarr.<id>.partial`` beside its
        target, and ``delete_dir`` refuses files.
        """
        prefix = prefix.rstrip("/")
        self._write(self.store.delete(prefix))
        self._write(self.store.delete_dir(prefix))

    def list_dir(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (a folder-like key ending in '/')."""

        async def collect() -> list[str]:
            # Web index pages name folders with a trailing slash.
            return [name.rstrip("/") async for name in self.store.list_dir(prefix)]

        try:
            return sorted(self._read(collect()))
        except FileNotFoundError:
            return []

    def list_prefix(self, prefix: str) -> Iterator[str]:
        async def collect() -> list[str]:
            return [key async for key in self.store.list_prefix(prefix)]

        yield from sorted(self._read(collect()))

    def _read(self, coro: Any) -> Any:
        try:
            return sync(coro)
        except Exception as exc:
            wrapped = _storage_error(self.store, exc, writing=False)
            if wrapped is exc:
                raise
            raise wrapped from exc

    def _write(self, coro: Any) -> None:
        try:
            sync(coro)
        except Exception as exc:
            wrapped = _wrap_write_error(self.store, exc)
            if wrapped is exc:
                raise
            raise wrapped from exc
