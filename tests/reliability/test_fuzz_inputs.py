"""Bad input, fuzzed with hypothesis: refs, model names, params/metrics, CLI and magic arguments, DQL text,
file names in add/pull-files. Each gets one clear error (or is stored faithfully) and changes nothing stored."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import numpy_weights
from hypothesis import example, given
from hypothesis import strategies as st

import nbmodelhub as mh
from nbmodelhub.errors import ModelHubError, UsageError
from nbmodelhub.store.documents import NAME_PATTERN

from .fuzz_support import assert_cli_clean, clean_error, fuzz, run_cli, scratch_cwd, stored, unchanged


@pytest.fixture
def seeded(tmp_path: Path) -> mh.Repository:
    """A repository with two versions of ``mlp`` (tagged, with a file) and one of ``other``."""
    script = tmp_path / "src" / "train.py"
    script.parent.mkdir()
    script.write_text("print('train')\n")
    repo = mh.open(tmp_path / "repo")
    repo.commit(numpy_weights(0, n=2, shape=(4, 3)), name="mlp", params={"lr": 0.1}, metrics={"acc": 0.5})
    repo.commit(numpy_weights(1, n=2, shape=(4, 3)), name="mlp", files=[(script, "train.py")], metrics={"acc": 0.6})
    repo.commit(numpy_weights(2, n=1, shape=(2, 2)), name="other")
    repo.tag("mlp@1", "best")
    repo.versions()  # warm the catalog
    yield repo
    repo.close()


def _path(repo: mh.Repository) -> Path:
    return Path(repo.location)


# -- refs -------------------------------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "@",
    ":",
    "@@",
    "::",
    "..",
    "/",
    "\\",
    "\x00",
    "\n",
    "zarr.json",
    "refs",
    "objects",
    "../mlp",
    "mlp/..",
    "mlp@",
    "mlp@-1",
    "mlp@0",
    "mlp@1.5",
    "mlp@1e3",
    "mlp@²",
    "mlp@٣",
    "mlp@ 1",
    "mlp@+1",
    f"mlp@{2**64}",
    f"mlp@{10**40}",
    "mlp@1@2",
    "mlp:best:x",
    "mlp:",
    ":best",
    "mlp:../best",
    "mlp:zarr.json",
    "mlp:best@1",
    "@1",
    "MLP",
    "mlp ",
    "ｍｌｐ",
    "0" * 64,
    "ffff",
    "deadbeef" * 8 + "0",
    "mlp\t@1",
    "💥",
    "mlp@1\x00",
]

refs = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.builds(
        lambda m, s, t: f"{m}{s}{t}",
        st.sampled_from(["mlp", "other", "", "..", "zarr.json", "ｍｌｐ"]),
        st.sampled_from(["@", ":", "@@", "/", ":@"]),
        st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=8)),
    ),
)


@fuzz(1000, 120)
@given(ref=refs)
@example(ref="mlp@²")
def test_bad_refs_get_one_clear_error_and_change_nothing(seeded: mh.Repository, ref: str) -> None:
    with unchanged(_path(seeded)):
        error = clean_error(lambda: seeded.get(ref))
        if error is None:
            return  # a real version (mlp, mlp@1, mlp:best, a unique id prefix …)
        for write in (
            lambda: seeded.tag(ref, "t2"),
            lambda: seeded.delete(ref),
            lambda: seeded.copy(ref, "c2"),
            lambda: seeded.load(ref),
            lambda: seeded.diff(ref, "mlp@1"),
        ):
            assert clean_error(write) is not None, ref


# -- model and tag names --------------------------------------------------------------------------------------

names = st.one_of(
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "a..b",
            "a/b",
            "a\\b",
            "/abs",
            "zarr.json",
            "ZARR.JSON",
            "versions",
            "deleted",
            "tags",
            "a" * 128,
            "a" * 129,
            "nul",
            "con",
            "a\x00b",
            "a\nb",
            "é",
            "e\u0301",
            "ｍｌｐ",
            "Ⅻ",
            "名前",
            "-a",
            "_a",
            ".a",
            "a@1",
            "a:b",
            "a b",
            "a\u200bb",
            "🙂",
            "a.",
            "a-",
            "1",
            "MLP",
        ]
    ),
    st.text(min_size=0, max_size=140),
)


@fuzz(600, 80)
@given(name=names)
@example(name="zarr.json")
def test_model_names_are_refused_clearly_or_round_trip(seeded: mh.Repository, name: str) -> None:
    weights = numpy_weights(5, n=1, shape=(2,))
    path = _path(seeded)
    before = stored(path)
    try:
        version = seeded.commit(weights, name=name)
    except UsageError as exc:
        assert str(exc).strip()
        assert stored(path) == before, name
        return
    # Accepted: the name is a name, nothing more — no key outside its own refs folder, readable back.
    assert NAME_PATTERN.match(name) and ".." not in name
    fresh = mh.open(path, read_only=True)
    assert version.model == name and fresh.get(f"{name}@{version.number}").id == version.id
    assert name in fresh.models() and fresh.get(name).id == version.id
    assert fresh.fsck().ok, fresh.fsck().problems
    new = set(stored(path)) - set(before)
    assert all(
        not k.startswith("refs/") or k.startswith(f"refs/models/{name}/") or k.startswith("refs/events/") for k in new
    ), sorted(new)


@fuzz(600, 60)
@given(tag=names)
@example(tag="zarr.json")
def test_tag_names_are_refused_clearly_or_round_trip(seeded: mh.Repository, tag: str) -> None:
    path = _path(seeded)
    before = stored(path)
    try:
        seeded.tag("mlp@2", tag, force=True)
    except UsageError as exc:
        assert str(exc).strip()
        assert stored(path) == before, tag
        return
    fresh = mh.open(path, read_only=True)
    assert fresh.get(f"mlp:{tag}").number == 2
    assert tag in fresh.get("mlp@2").tags


# -- params and metrics ----------------------------------------------------------------------------------------


class Opaque:
    pass


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=10),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
)
odd_leaf = st.one_of(
    st.sampled_from(
        [
            set(),
            {1},
            b"x",
            Opaque(),
            object(),
            1j,
            frozenset(),
            np.float32("nan"),
            np.int64(3),
            np.array(2.5),
            np.ones(3),
            Ellipsis,
            range(3),
            math.inf,
        ]
    ),
    json_leaf,
)
values = st.recursive(
    odd_leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.tuples(kids, kids),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(), st.none(), st.floats()), kids, max_size=3),
    ),
    max_leaves=12,
)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _is_faithful(original: Any, stored_value: Any) -> bool:
    """The stored value equals what the user passed, as JSON sees it (tuples are lists, numpy scalars numbers)."""
    if isinstance(original, float) and isinstance(stored_value, float) and math.isnan(original):
        return math.isnan(stored_value)
    if hasattr(original, "item") and getattr(original, "ndim", 1) == 0:
        original = original.item()
    if isinstance(original, (list, tuple)):
        return (
            isinstance(stored_value, list)
            and len(original) == len(stored_value)
            and all(_is_faithful(a, b) for a, b in zip(original, stored_value, strict=True))
        )
    if isinstance(original, dict):
        return (
            isinstance(stored_value, dict)
            and list(original) == list(stored_value)
            and all(_is_faithful(original[k], stored_value[k]) for k in original)
        )
    return type(original) is type(stored_value) and original == stored_value


@fuzz(1000, 150)
@given(key=st.one_of(st.text(max_size=8), st.integers(), st.none()), value=values)
@example(key="deep", value=_nested(70))
@example(key="huge", value=2**100)
@example(key="keys", value={1: "int key", "1": "str key"})
@example(key="nan", value=math.nan)
def test_params_are_stored_faithfully_or_refused(seeded: mh.Repository, key: Any, value: Any) -> None:
    path = _path(seeded)
    before = stored(path)
    try:
        version = seeded.commit(numpy_weights(0, n=1, shape=(2,)), name="p", params={key: value})
    except UsageError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()
        assert stored(path) == before
        return
    back = mh.open(path, read_only=True).get(version.ref).params
    assert list(back) == [key] and _is_faithful(value, back[key]), (value, back)
    json.dumps(back, allow_nan=False)  # what every front door prints


def test_deeply_nested_values_are_refused_in_one_line(seeded: mh.Repository) -> None:
    path = _path(seeded)
    before = stored(path)
    for params, metrics in (({"deep": _nested(5000)}, None), (None, {"deep": _nested(5000)})):
        with pytest.raises(UsageError) as info:
            seeded.commit(numpy_weights(0, n=1, shape=(2,)), name="deep", params=params, metrics=metrics)
        assert "\n" not in str(info.value)
    assert stored(path) == before


@fuzz(1000, 150)
@given(key=st.one_of(st.text(max_size=8), st.integers(), st.none()), value=values)
@example(key="loss", value=[(1, math.nan), (2, math.inf), (3, -math.inf)])
@example(key="huge", value=2**100)
@example(key="deep", value=_nested(70))
@example(key="curve", value={1: 0.5, 2: 2**70})
def test_metrics_are_stored_faithfully_or_refused(seeded: mh.Repository, key: Any, value: Any) -> None:
    path = _path(seeded)
    before = stored(path)
    try:
        version = seeded.commit(numpy_weights(0, n=1, shape=(2,)), name="m", metrics={key: value})
    except UsageError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()
        assert stored(path) == before
        return
    back = mh.open(path, read_only=True).get(version.ref)
    if isinstance(value, (dict, list, tuple)):
        pairs = sorted(value.items() if isinstance(value, dict) else value, key=lambda p: p[0])
        assert [s for s, _ in back.curves[key]] == [s for s, _ in pairs]
        assert all(
            _is_faithful(float(v) if isinstance(v, float) else v, got)
            for (_, v), (_, got) in zip(pairs, back.curves[key], strict=True)
        )
        if pairs:
            assert _is_faithful(pairs[-1][1], back.metrics[key])
    else:
        assert _is_faithful(value, back.metrics[key]), (value, back.metrics)


# -- file names in add / pull-files ----------------------------------------------------------------------------

file_names = st.one_of(
    st.sampled_from(
        [
            "../escape.txt",
            "../../escape.txt",
            "/tmp/abs.txt",
            "a/../../escape.txt",
            "..",
            ".",
            "",
            "a/./b",
            "a//b",
            "dir/",
            "\\..\\escape.txt",
            "~/escape.txt",
            "a\x00b",
            "ok.txt",
        ]
    ),
    st.lists(st.sampled_from(["..", ".", "a", "b.txt", "", "/", "~", "é"]), min_size=1, max_size=5).map("/".join),
)


@fuzz(400, 60)
@given(name=file_names)
def test_pull_files_never_writes_outside_the_destination(
    seeded: mh.Repository, tmp_path_factory: Any, name: str
) -> None:
    """A record that names a file ``../x`` or ``/abs`` (a malicious repository) never writes outside dest."""
    box = tmp_path_factory.mktemp("box")
    dest = box / "dest"
    source = box / "file.txt"
    source.write_text("payload")
    path = _path(seeded)
    try:
        version = seeded.commit(numpy_weights(0, n=1, shape=(2,)), name="f", files=[(source, name)])
    except ModelHubError:
        return  # refusing such a name at commit is fine too
    outside_before = {p for p in box.rglob("*")}
    with unchanged(path):
        clean_error(lambda: seeded.pull_files(version.ref, dest))
        code, _, err = run_cli(["--repo", str(path), "pull-files", version.ref, str(dest)])
        assert_cli_clean(code, err, ["pull-files", name])
    escaped = {p for p in box.rglob("*") if p not in outside_before and not p.is_relative_to(dest)}
    assert not escaped, escaped
    assert not Path("/tmp/abs.txt").exists() or Path("/tmp/abs.txt").read_text() != "payload"


def test_add_a_folder_with_a_symlink_out_of_it_is_refused_or_stored_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source folder holding a symlink to a file elsewhere: the stored name stays inside the folder's name."""
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("secret")
    project = tmp_path / "work" / "project"
    project.mkdir(parents=True)
    (project / "ok.txt").write_text("ok")
    os.symlink(secret, project / "link.txt")
    os.symlink(tmp_path / "elsewhere", project / "linkdir")
    monkeypatch.chdir(tmp_path / "work")
    repo = mh.open(tmp_path / "repo")
    path = tmp_path / "repo"
    error = clean_error(lambda: repo.add(["project"]))
    if error is None:
        names = sorted(f.name for f in repo.staged())
        assert all(n.startswith("project/") and ".." not in n.split("/") for n in names), names
    code, _, err = run_cli(["--repo", str(path), "add", str(project)])
    assert_cli_clean(code, err, ["add", str(project)])


WRITES = {
    "commit",
    "copy",
    "tag",
    "delete",
    "gc",
    "archive",
    "add",
    "eval",
    "query",
    "run",
    "init",
    "pull",
    "remote",
    "card",
}

# -- the command line ------------------------------------------------------------------------------------------

COMMANDS = [
    "init",
    "commit",
    "list",
    "log",
    "desc",
    "diff",
    "eval",
    "query",
    "copy",
    "tag",
    "checkout",
    "add",
    "files",
    "pull-files",
    "delete",
    "gc",
    "archive",
    "fsck",
    "runs",
    "run",
    "publish",
    "pull",
    "search",
    "remote",
    "import",
    "card",
    "nope",
]
TOKENS = [
    "mlp",
    "mlp@1",
    "mlp@2",
    "mlp:best",
    "other",
    "@",
    "..",
    "../x",
    "/",
    "-n",
    "--name",
    "-m",
    "--params",
    "--metrics",
    "lr=1e-4",
    "lr=NaN",
    "acc=Infinity",
    "x=[1,2",
    "=",
    "k=",
    "--step",
    "-1",
    "99999999999999999999",
    "--snapshot",
    "--json",
    "--force",
    "--last",
    "0",
    "--bins",
    "--max-chain",
    "--max-recreate-bytes",
    "1ZB",
    "--include",
    "*",
    "--sort",
    "--all",
    "--unpack",
    "select m",
    "select",
    "--script",
    "--function",
    "f",
    "\x00",
    "💥",
    "",
    "-",
    "--",
    "--debug",
    "--repo",
]


@fuzz(1500, 150)
@given(
    argv=st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)), max_size=6),
    command=st.sampled_from(COMMANDS),
)
def test_cli_arguments_get_one_error_line_and_change_nothing(
    seeded: mh.Repository, tmp_path_factory: Any, command: str, argv: list[str]
) -> None:
    path = _path(seeded)
    full = ["--repo", str(path), command, *argv]
    # Only read-only commands (and writes that must fail) keep the store unchanged; the rest may write.
    before = stored(path)
    with scratch_cwd(tmp_path_factory):
        code, _, err = run_cli(full)
    assert_cli_clean(code, err, full)
    if code != 0 or command not in WRITES:
        assert stored(path) == before, full
    assert mh.open(path, read_only=True).fsck().ok


# -- the %dlv magic --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shell() -> Iterator[Any]:
    """IPython's test shell. ``start_ipython`` works once per process and returns None after, so other
    modules (tests/test_magics.py) may have started it already; leave it startable for them afterwards."""
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from IPython.testing import globalipapp

    started_here = not hasattr(globalipapp.start_ipython, "already_called")
    ip = globalipapp.start_ipython() if started_here else TerminalInteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbmodelhub")
    yield ip
    if started_here:
        del globalipapp.start_ipython.already_called  # type: ignore[attr-defined]


@fuzz(800, 100)
@given(
    command=st.sampled_from([*COMMANDS, "hist", "--help"]),
    rest=st.lists(
        # (without --debug, which re-raises the original exception on purpose)
        st.one_of(
            st.sampled_from([*(t for t in TOKENS if t != "--debug"), "'", '"', "model", "{x}", "$x", "weights"]),
            st.text(max_size=10).filter(lambda t: t != "--debug"),
        ),
        max_size=5,
    ),
)
def test_magic_lines_get_one_usage_error_and_change_nothing(
    seeded: mh.Repository, shell: Any, tmp_path_factory: Any, command: str, rest: list[str]
) -> None:
    from IPython.core.error import UsageError as IPythonUsageError
    from IPython.utils.capture import capture_output

    path = _path(seeded)
    with capture_output():
        shell.run_line_magic("dlv", f"init {path}")
    shell.user_ns["model"] = numpy_weights(0, n=1, shape=(2,))
    line = " ".join([command, *rest])
    before = stored(path)
    try:
        with capture_output(), scratch_cwd(tmp_path_factory):
            shell.run_line_magic("dlv", line)
    except IPythonUsageError as exc:
        text = str(exc)
        assert text.strip(), line
        assert "for the traceback" not in text, (line, text)  # the magic's tag on an unexpected exception
        assert "\n" not in text.strip() or (text.startswith("dlv: ") and "^" in text), (line, text)
        assert stored(path) == before, line
        return
    if command not in WRITES:
        assert stored(path) == before, line


# -- DQL --------------------------------------------------------------------------------------------------------

QUERIES = [
    'select m where m.name like "ml%" and m.metrics.acc > 0.5',
    "select m where m.params.lr = 0.1 order by m.metrics.acc desc limit 1",
    'select m where "best" in m.tags and m.number = 1',
    'select m where m["layer*"] has PARAMETER and not m.name in ["other"]',
    'slice a from b where b.name = "mlp" mutate a.input = b["layer0"] and a.output = b["layer1"]',
    'construct m2 from m1 where m1.name like "ml%" and m1["layer*($1)"].next has LINEAR '
    'mutate m1["layer*($1)"].insert = RELU("relu$1")',
    'evaluate m from "mlp" with config = "cfg", train = "fit" vary lr in [0.1, 0.01] keep top 1 by acc',
]
DQL_PIECES = [
    "select",
    "slice",
    "construct",
    "evaluate",
    "from",
    "where",
    "mutate",
    "and",
    "or",
    "not",
    "in",
    "like",
    "has",
    "order by",
    "limit",
    "(",
    ")",
    "[",
    "]",
    '"',
    "'",
    ".",
    ",",
    "=",
    ">",
    "<",
    "!=",
    "m",
    "m.",
    "m[",
    "$1",
    "*",
    "**",
    "1e999",
    "-1",
    "99999999999999999999999",
    "NaN",
    "null",
    "true",
    "\\",
    "\x00",
    "💥",
    "m.metrics.",
    "m.params",
    "RELU(",
    'POOL("AVG")',
    "CONV(kernel_size=",
    "desc",
]


def _mutate(text: str, where: int, cut: int, insert: str) -> str:
    where = where % (len(text) + 1)
    return text[:where] + insert + text[where + cut :]


dql_text = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(DQL_PIECES), max_size=12).map(" ".join),
    st.builds(
        _mutate,
        st.sampled_from(QUERIES),
        st.integers(0, 200),
        st.integers(0, 8),
        st.one_of(st.sampled_from(DQL_PIECES), st.text(max_size=4)),
    ),
)


@fuzz(2000, 200)
@given(text=dql_text)
def test_dql_text_gets_one_clear_error_never_a_traceback(seeded: mh.Repository, text: str) -> None:
    with unchanged(_path(seeded)):
        error = clean_error(lambda: seeded.query(text))
    if error is not None:
        assert "Traceback" not in str(error) and "lark" not in str(error).lower(), str(error)


def test_add_with_one_bad_path_stores_nothing(seeded: mh.Repository, tmp_path: Path) -> None:
    """`dlv add good.txt missing.txt`: the good file's object must not be written before the error."""
    good = tmp_path / "good.txt"
    good.write_text("fresh content " * 100)
    with unchanged(_path(seeded)), pytest.raises(UsageError, match="no such file"):
        seeded.add([good, tmp_path / "missing.txt"])
    assert seeded.staged() == []
