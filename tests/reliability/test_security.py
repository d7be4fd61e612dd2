"""Security: nothing is ever unpickled, pulled files never escape, the server wants its token and XSRF,
credentials never reach logs or messages."""

from __future__ import annotations

import ast
import io
import logging
import pickle
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import numpy_weights
from pytest_jupyter.jupyter_server import *  # noqa: F403  (jp_* fixtures: a real Jupyter server)

import nbmodelhub as mh
from nbmodelhub.errors import CorruptObject, ModelHubError, UsageError

from .fuzz_support import run_cli, stored

PACKAGE = Path(mh.__file__).resolve().parent

# -- the package never unpickles ---------------------------------------------------------------------------------

PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _call_name(node: ast.Call) -> str:
    f = node.func
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    # the root of a chain: a name, or an expression (``cls(config).eval()`` is a module's method, not eval)
    parts.append(f.id if isinstance(f, ast.Name) else "<expr>")
    return ".".join(reversed(parts))


def _kw(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def _is_const(node: ast.expr | None, value: Any) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_calls(source: str, filename: str) -> list[str]:
    """Every pickle import or use, unsafe torch.load/np.load/yaml.load, eval/exec, shell=True in ``source``."""
    found: list[str] = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLERS:
            found.append(f"{where} from {node.module} import …")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            last = name.rsplit(".", 1)[-1]
            if name.split(".")[0] in PICKLERS:
                found.append(f"{where} {name}()")
            elif last == "load" and name.split(".")[0] == "torch" and not _is_const(_kw(node, "weights_only"), True):
                found.append(f"{where} {name}() without weights_only=True")
            elif (
                last == "load"
                and name.split(".")[0] in ("np", "numpy")
                and not _is_const(_kw(node, "allow_pickle"), False)
                and _kw(node, "allow_pickle") is not None
            ):
                found.append(f"{where} {name}(allow_pickle=…)")
            elif name in ("yaml.load", "yaml.load_all") and "Safe" not in ast.unparse(_kw(node, "Loader") or node):
                found.append(f"{where} {name}() without SafeLoader")
            elif name in ("yaml.unsafe_load", "yaml.full_load", "pandas.read_pickle", "pd.read_pickle") or name in (
                "eval",
                "exec",
                "builtins.eval",
                "builtins.exec",
            ):
                found.append(f"{where} {name}()")
            elif _is_const(_kw(node, "shell"), True):
                found.append(f"{where} {name}(shell=True)")
            elif name.endswith("__reduce__") or (last in ("loads", "load") and name.split(".")[0] == "pickle"):
                found.append(f"{where} {name}()")
    return found


def test_the_scanner_finds_what_it_looks_for() -> None:
    bad = """
import pickle
from joblib import load
import torch, numpy as np, yaml, subprocess
torch.load(f)
torch.load(f, weights_only=False)
np.load(f, allow_pickle=True)
yaml.load(s)
eval(text)
exec(code)
subprocess.run(cmd, shell=True)
"""
    assert len(unsafe_calls(bad, "bad.py")) == 9
    good = (
        "import torch\nmodel.eval()\nf(x).eval()\ntorch.load(f, map_location='cpu', weights_only=True)\n"
        "np.load(f)\nyaml.safe_load(s)\n"
    )
    assert unsafe_calls(good, "good.py") == []


def test_the_package_never_unpickles_evals_or_runs_a_shell() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40  # the whole package, not an empty folder
    problems = [p for f in files for p in unsafe_calls(f.read_text(), str(f.relative_to(PACKAGE.parent)))]
    assert problems == [], "\n".join(problems)


class _Marker:
    """Unpickling this runs os.system-free Python that creates a file: proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def _pickle_bomb(marker: Path) -> bytes:
    """A real ``torch.save`` zip whose data.pkl holds a ``__reduce__`` that would create ``marker``."""
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = pickle.dumps({"w": _Marker(str(marker))}, protocol=2)
            dst.writestr(item, data)
    return out.getvalue()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_a_pickle_payload_checkpoint_is_refused_and_never_runs(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    bomb = tmp_path / f"evil{suffix}"
    bomb.write_bytes(_pickle_bomb(marker))
    plain = tmp_path / f"plain{suffix}"
    plain.write_bytes(pickle.dumps({"w": _Marker(str(marker))}))  # a bare pickle, not even a zip
    repo = mh.open(tmp_path / "repo")
    before = stored(tmp_path / "repo")
    for source in (bomb, plain):
        with pytest.raises(UsageError, match="weights-only"):
            repo.commit(source, name="evil")
        code, _, err = run_cli(["--repo", str(tmp_path / "repo"), "commit", str(source), "-n", "evil"])
        assert code == 2 and err.count("\n") == 1 and "weights-only" in err and "\x1b" not in err, err
    assert not marker.exists(), "a pickle payload was executed"
    assert stored(tmp_path / "repo") == before


# -- pulled files never escape -----------------------------------------------------------------------------------


def _crafted_version(store: Any, model: str, files: list[dict[str, Any]], tensors: dict[str, Any]) -> str:
    """Write a version record straight into a repository or hub, as a malicious one might."""
    record = {
        "kind": "version",
        "model": model,
        "message": "crafted",
        "author": "mallory",
        "created": "2024-01-01T00:00:00Z",
        "parents": [],
        "params": {},
        "metrics": {},
        "curves": {},
        "snapshots": [{"step": None, "tensors": tensors, "ties": {}}],
        "files": files,
        "graph": None,
        "framework": "numpy",
        "source": None,
        "nonce": uuid.uuid4().hex,
    }
    vid = store.put_document("versions", record)
    store.refs.allocate(model, vid)
    return vid


EVIL_NAMES = [
    "../escape.txt",
    "../../escape.txt",
    "a/../../escape.txt",
    "/tmp/nbmh-abs-{u}.txt",
    "..\\escape.txt",
    "",
    ".",
    "a/./b",
    "a\x00b",
]


@pytest.mark.parametrize("evil", EVIL_NAMES)
def test_a_malicious_hub_record_cannot_write_outside_the_destination(tmp_path: Path, evil: str) -> None:
    evil = evil.format(u=uuid.uuid4().hex)
    box = tmp_path / "box"
    box.mkdir()
    hub = mh.open(box / "hub")
    digest = hub.store.put_file(b"payload")
    _crafted_version(hub.store, "trojan", [{"name": evil, "size": 7, "mtime": 0.0, "hash": digest}], {})
    local = mh.open(box / "local")
    outside_before = set(box.rglob("*"))
    try:
        local.pull("trojan", hub=box / "hub")
    except ModelHubError:
        pass  # refusing the record at pull is fine
    else:
        dest = box / "dest"
        with pytest.raises(CorruptObject, match="refusing"):
            local.pull_files("trojan", dest)
        code, _, err = run_cli(["--repo", str(box / "local"), "pull-files", "trojan", str(dest)])
        assert code == 1 and err.startswith("dlv: error: ") and err.count("\n") == 1, err
    new = {
        p
        for p in set(box.rglob("*")) - outside_before
        if not (p.is_relative_to(box / "local") or p.is_relative_to(box / "dest"))
    }
    assert new == set(), new
    assert not any(p.is_file() for p in (box / "dest").rglob("*")) if (box / "dest").exists() else True
    if evil.startswith("/"):
        assert not Path(evil).exists()


@pytest.mark.parametrize("kind", ["files", "tensors"])
def test_a_hub_record_with_a_path_for_a_hash_is_refused_at_pull(tmp_path: Path, kind: str) -> None:
    """Object keys come from records: a 'hash' of ../../x must never read or write outside either store."""
    box = tmp_path / "box"
    box.mkdir()
    (box / "outside").mkdir()
    (box / "outside" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    hub = mh.open(box / "hub")
    evil_hash = "../../../outside"
    if kind == "files":
        _crafted_version(hub.store, "trojan", [{"name": "f.txt", "size": 7, "mtime": 0.0, "hash": evil_hash}], {})
    else:
        _crafted_version(hub.store, "trojan", [], {"w": {"hash": evil_hash, "dtype": "float32", "shape": [2]}})
    local = mh.open(box / "local")
    outside_before = {p: p.read_bytes() for p in box.rglob("*") if p.is_file() and not p.is_relative_to(box / "hub")}
    with pytest.raises(ModelHubError):
        local.pull("trojan", hub=box / "hub")
        local.load("trojan")
        local.pull_files("trojan", box / "dest")
    after = {p: p.read_bytes() for p in box.rglob("*") if p.is_file() and not p.is_relative_to(box / "hub")}
    escaped = {p for p in set(after) - set(outside_before) if not p.is_relative_to(box / "local")}
    assert escaped == set(), escaped
    assert all(after[p] == outside_before[p] for p in outside_before if p in after)


# -- credentials never reach logs or messages ---------------------------------------------------------------------

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRETKEY"


def test_a_failing_publish_never_shows_the_secret_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Credentials in the environment, a hub at an endpoint nobody answers: the error names the hub, never
    the secret, in the exception, the CLI's stderr, or any log record at DEBUG level."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SECRET + "-session")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: connection refused at once
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    repo = mh.open(tmp_path / "repo")
    repo.commit(numpy_weights(0, n=1, shape=(2,)), name="m")
    caplog.set_level(logging.DEBUG)
    messages = []
    for hub in ("s3://bucket/hub", f"s3://bucket/hub?X-Amz-Signature={SECRET}"):
        with pytest.raises(ModelHubError) as info:
            repo.publish("m", hub=hub)
        messages.append(str(info.value))
        code, out, err = run_cli(["--repo", str(tmp_path / "repo"), "publish", "m", "--hub", hub, "--debug"])
        assert code == 1
        messages += [out, err]
    captured = capfd.readouterr()
    text = "\n".join([*messages, captured.out, captured.err, *(r.getMessage() for r in caplog.records)])
    assert SECRET not in text
    assert "AKIAEXAMPLEKEYID0001" not in text
    with pytest.raises(UsageError, match="keep credentials out") as info:
        repo.publish("m", hub=f"https://user:{SECRET}@example.com/hub")
    assert SECRET not in str(info.value)


# -- the server extension -----------------------------------------------------------------------------------------


@pytest.fixture
def jp_server_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A Jupyter server with the extension, writes allowed (so a 403 can only be the token or XSRF)."""
    repo = mh.open(tmp_path / "served")
    repo.commit(numpy_weights(0, n=1, shape=(2,)), name="mlp")
    repo.close()
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "served"))
    return {"ServerApp": {"jpserver_extensions": {"nbmodelhub.server": True}}, "ModelHubServer": {"read_only": False}}


def _on_server_loop(loop: Any, coro: Any) -> None:
    """Run a coroutine on the Jupyter server's own event loop (pytest-jupyter's async runner is a conftest
    hook, so this module drives its coroutines itself)."""
    loop.run_until_complete(coro)


ROUTES = [
    "repositories",
    "models",
    "state",
    "versions?model=mlp",
    "version?ref=mlp@1",
    "graph?ref=mlp@1",
    "histograms?ref=mlp@1",
    "diff?a=mlp@1&b=mlp@1",
    "lineage?model=mlp",
    "runs",
]
WRITES = [
    ("POST", "tag", '{"ref": "mlp@1", "tag": "pwned"}'),
    ("DELETE", "version?ref=mlp@1", None),
    ("POST", "repositories", '{"location": "/tmp/elsewhere"}'),
]


async def _every_route_wants_the_token(
    http_server_client: Any, jp_base_url: str, jp_auth_header: Any, tmp_path: Path
) -> None:
    before = stored(tmp_path / "served")
    for path in ROUTES:
        response = await http_server_client.fetch(jp_base_url + "nbmodelhub/" + path, raise_error=False)
        assert response.code == 403, path
        bad = await http_server_client.fetch(
            jp_base_url + "nbmodelhub/" + path, raise_error=False, headers={"Authorization": "token not-the-token"}
        )
        assert bad.code == 403, path
        assert b"not-the-token" not in bad.body
        good = await http_server_client.fetch(
            jp_base_url + "nbmodelhub/" + path, raise_error=False, headers=jp_auth_header
        )
        assert good.code == 200, (path, good.body)
    for method, path, body in WRITES:
        response = await http_server_client.fetch(
            jp_base_url + "nbmodelhub/" + path,
            method=method,
            body=body,
            raise_error=False,
            allow_nonstandard_methods=True,
        )
        assert response.code == 403, path
    assert stored(tmp_path / "served") == before


async def _writes_with_a_login_cookie_want_xsrf(
    http_server_client: Any, jp_base_url: str, jp_auth_header: Any, tmp_path: Path
) -> None:
    """A browser holding the login cookie, tricked by another site into a POST: refused without the XSRF token."""
    token = jp_auth_header["Authorization"].split()[-1]
    login = await http_server_client.fetch(jp_base_url + f"nbmodelhub/models?token={token}", raise_error=False)
    assert login.code == 200
    cookies = [c.split(";", 1)[0] for c in login.headers.get_list("Set-Cookie")]
    session = [c for c in cookies if not c.startswith("_xsrf=")]
    assert session, login.headers
    cookie = "; ".join(session)
    before = stored(tmp_path / "served")
    for method, path, body in WRITES:
        response = await http_server_client.fetch(
            jp_base_url + "nbmodelhub/" + path,
            method=method,
            body=body,
            headers={"Cookie": cookie},
            raise_error=False,
            allow_nonstandard_methods=True,
        )
        assert response.code == 403, (path, response.body)
        assert b"xsrf" in response.body.lower() or b"XSRF" in response.body, response.body
        assert token.encode() not in response.body
    assert stored(tmp_path / "served") == before
    # The same cookie with a matching XSRF cookie and header (what the sidebar sends) goes through.
    ok = await http_server_client.fetch(
        jp_base_url + "nbmodelhub/tag",
        method="POST",
        body='{"ref": "mlp@1", "tag": "ok"}',
        raise_error=False,
        headers={"Cookie": cookie + "; _xsrf=abc123", "X-XSRFToken": "abc123"},
    )
    assert ok.code == 200, ok.body
    assert mh.open(tmp_path / "served", read_only=True).get("mlp:ok").number == 1


async def _errors_never_echo_the_token(http_server_client: Any, jp_base_url: str, jp_auth_header: Any) -> None:
    """A failing request authenticated by ?token= in its URL: the error body never repeats the URL or token."""
    token = jp_auth_header["Authorization"].split()[-1]
    for path in (
        "version?ref=nope@1",
        "versions?model=nope",
        "diff?a=mlp@1&b=nope",
        "graph?ref=@@",
        "version?ref=mlp@1&repo=/nonexistent/place",
        "versions?model=mlp&limit=-5",
    ):
        response = await http_server_client.fetch(
            jp_base_url + "nbmodelhub/" + path + f"&token={token}", raise_error=False
        )
        assert response.code >= 400, path
        assert token.encode() not in response.body, (path, response.body)


def test_every_route_wants_the_token(
    jp_asyncio_loop: Any, http_server_client: Any, jp_base_url: str, jp_auth_header: Any, tmp_path: Path
) -> None:
    _on_server_loop(
        jp_asyncio_loop, _every_route_wants_the_token(http_server_client, jp_base_url, jp_auth_header, tmp_path)
    )


def test_writes_with_a_login_cookie_want_xsrf(
    jp_asyncio_loop: Any, http_server_client: Any, jp_base_url: str, jp_auth_header: Any, tmp_path: Path
) -> None:
    _on_server_loop(
        jp_asyncio_loop,
        _writes_with_a_login_cookie_want_xsrf(http_server_client, jp_base_url, jp_auth_header, tmp_path),
    )


def test_errors_never_echo_the_token(
    jp_asyncio_loop: Any, http_server_client: Any, jp_base_url: str, jp_auth_header: Any
) -> None:
    _on_server_loop(jp_asyncio_loop, _errors_never_echo_the_token(http_server_client, jp_base_url, jp_auth_header))
