"""``dlv import``: bring a model in from another hub's files.

Sources: a Hugging Face-format folder (``config.json`` + ``*.safetensors`` or ``*.bin`` shards),
``hf://org/name[@revision]`` (resolved through the local Hugging Face cache, downloaded into ours
only if it is not there), an ``http(s)://`` URL of one file (downloaded once, then cached), an
ONNX file, a safetensors file, or a ``.pt``/``.bin`` state dict (read weights-only, never
unpickled). The original files are kept as the version's files, byte for byte; the tensors and
the layer graph are derived from them. For a Hugging Face folder whose architecture transformers
knows, the graph is traced from the model built on torch's ``meta`` device (no memory, no
weights, no remote code), so it has real data-flow edges and the ties (GPT-2's ``lm_head``)
the files leave out.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from nbmodelhub import adapters
from nbmodelhub.adapters.safetensors import read_safetensors
from nbmodelhub.errors import UsageError
from nbmodelhub.graph import LayerGraph, graph_from_module, graph_from_tensors
from nbmodelhub.store.tensors import Tensor

WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".pt", ".pth", ".bin", ".ckpt")
# What we take from a Hugging Face repository: weights, configs, tokenizers, the card. No code.
HF_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.txt", "*.model", "*.tiktoken"]
_HF_REF = re.compile(r"^hf://(?P<repo>[\w.\-]+(?:/[\w.\-]+)?)(?:@(?P<rev>[\w.\-/]+))?/?$")


@dataclass
class Imported:
    """A source read and ready to commit."""

    weights: adapters.Weights
    files: list[tuple[Path, str]]  # (where the original is, the name it is kept by)
    card: dict[str, str] = field(default_factory=dict)
    origin: str = ""


def read(source: str | os.PathLike[str], downloads: Path) -> Imported:
    """Resolve ``source`` to local files (downloading into ``downloads`` if needed) and read them."""
    text = os.fspath(source).strip()
    if not text:
        raise UsageError("nothing to import: give a folder, a file, hf://org/name or an https:// URL")
    if text.startswith("hf://"):
        path = hf_snapshot(text, downloads / "huggingface")
    elif text.startswith(("http://", "https://")):
        path = download(text, downloads / "url")
    else:
        path = Path(text).expanduser()
    if path.is_dir():
        imported = _folder(path)
    elif path.is_file():
        imported = _file(path)
    else:
        raise UsageError(f"no such file or folder: {path}")
    imported.origin = text
    return imported


# -- where sources come from ----------------------------------------------------------------------


def hf_cache_dirs() -> list[Path]:
    """The Hugging Face cache, as huggingface_hub itself finds it."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return [Path(explicit).expanduser()]
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return [Path(home).expanduser() / "hub"]


def _cached_snapshot(cache: Path, repo_id: str, revision: str) -> Path | None:
    base = cache / ("models--" + repo_id.replace("/", "--"))
    ref = base / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = base / "snapshots" / commit
    return snapshot if snapshot.is_dir() and any(snapshot.iterdir()) else None


def hf_snapshot(url: str, own_cache: Path) -> Path:
    """``hf://org/name[@rev]`` → the folder of that snapshot: the local cache first, then ours."""
    m = _HF_REF.match(url)
    if m is None:
        raise UsageError(f"bad Hugging Face reference {url!r}: write hf://org/name or hf://org/name@revision")
    repo_id, revision = m.group("repo"), m.group("rev") or "main"
    for cache in [*hf_cache_dirs(), own_cache]:
        found = _cached_snapshot(cache, repo_id, revision)
        if found is not None:
            return found
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, cache_dir=own_cache, allow_patterns=HF_PATTERNS))
    except ImportError as exc:
        raise UsageError(f"{url} is not in the local Hugging Face cache, and huggingface_hub is missing") from exc
    except Exception as exc:  # huggingface_hub raises many types (offline, not found, gated)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{url} is not in the local Hugging Face cache ({hf_cache_dirs()[0]}) and could not be downloaded "
            f"({first}): download it with `hf download {repo_id}` and retry"
        ) from exc


def download(url: str, cache: Path) -> Path:
    """One file from a web server, kept under ``cache`` so a second import reads no network."""
    parsed = urllib.parse.urlsplit(url)
    name = Path(urllib.parse.unquote(parsed.path)).name
    if not name or not name.lower().endswith(WEIGHT_SUFFIXES):
        raise UsageError(f"{_public(url)} does not name a weights file ({', '.join(WEIGHT_SUFFIXES)})")
    target = cache / hashlib.sha256(url.encode()).hexdigest()[:24] / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with (
                tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out,
                tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}", delay=1.0, leave=False) as bar,
            ):
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        # Whole or nothing: an interrupted download never poses as the cached file.
        os.replace(out.name, target)
    except OSError as exc:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(out.name)
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise UsageError(f"cannot download {_public(url)}: {reason}") from exc
    return target


def _public(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))


# -- reading --------------------------------------------------------------------------------------


def _file(path: Path) -> Imported:
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise UsageError(f"cannot import {path.name}: expected a folder or a {', '.join(WEIGHT_SUFFIXES)} file")
    return Imported(adapters.extract(path), [(path, path.name)])


def _originals(folder: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue  # .git, .cache, editor droppings: not part of the model
        if path.is_file():
            yield path, rel.as_posix()


def _folder(folder: Path) -> Imported:
    files = list(_originals(folder))
    config = _json(folder / "config.json")
    shards = sorted(p for p, _ in files if p.suffix == ".safetensors")
    tensors: dict[str, Tensor] = {}
    ties: dict[str, str] = {}
    sources = shards or sorted(p for p, _ in files if p.suffix in (".bin", ".pt", ".pth"))
    if not sources:
        raise UsageError(f"{folder} has no *.safetensors or *.bin weights: import a model folder or a file")
    if shards:
        parts = [read_safetensors(p)[0] for p in shards]
    else:
        parts = []
        for p in sources:
            part, part_ties = adapters.torch_adapter.read_pt(p)
            parts.append(part)
            ties.update(part_ties)
    for shard, part in zip(sources, parts, strict=True):
        clash = set(part) & set(tensors)
        if clash:
            raise UsageError(f"{shard.name} repeats tensor {sorted(clash)[0]!r} from another shard")
        tensors.update(part)
    traced = _traced(folder, tensors) if config is not None else None
    if traced is not None:
        graph, module_ties = traced
        ties.update(module_ties)
    else:
        graph = graph_from_tensors({n: (t.dtype, t.shape) for n, t in tensors.items()}, config)
    framework = "safetensors" if shards else "torch"
    weights = adapters.Weights(tensors, ties, framework, folder.name, graph=graph)
    return Imported(weights, files, _card(folder / "README.md"))


def _json(path: Path) -> dict[str, Any] | None:
    import json

    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text())
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc})") from exc
    return loaded if isinstance(loaded, dict) else None


def _traced(folder: Path, tensors: dict[str, Tensor]) -> tuple[LayerGraph, dict[str, str]] | None:
    """The architecture's real graph, from the model class transformers has for this config."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder))  # never runs repository code
        arch = (getattr(config, "architectures", None) or [None])[0]
        cls = getattr(transformers, arch, None) if isinstance(arch, str) else None
        if cls is None:
            return None
        with torch.device("meta"):
            module = cls(config).eval()
        if not set(tensors) <= set(module.state_dict()):
            return None  # the files do not fit the class the config names: trust the files
        graph = graph_from_module(module)
    except Exception:  # any failure leaves the names-level graph, which always works
        return None
    finally:
        transformers.logging.set_verbosity(verbosity)
    return graph, _module_ties(module, set(tensors))


def _module_ties(module: Any, stored: set[str]) -> dict[str, str]:
    """Names the files leave out because the module shares them (``lm_head.weight`` → ``wte``)."""
    by_object: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        by_object.setdefault(id(param), []).append(name)
    ties = {}
    for names in by_object.values():
        kept = [n for n in names if n in stored]
        if kept:
            ties.update({n: kept[0] for n in names if n not in stored})
    return ties


def _card(readme: Path) -> dict[str, str]:
    """A Hugging Face README (YAML front matter + markdown) as card fields."""
    if not readme.is_file():
        return {}
    text = readme.read_text(errors="replace")
    card: dict[str, str] = {}
    front = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.S)
    if front:
        text = text[front.end() :]
        lic = re.search(r"^license:\s*(\S+)", front.group(1), re.M)
        if lic:
            card["license"] = lic.group(1).strip("'\"")
    if text.strip():
        card["description"] = text.strip()
    return card
