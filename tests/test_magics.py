"""``%dlv``: every command in a real IPython shell, against a real repository on disk, error paths included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from IPython.core.error import UsageError as IPythonUsageError
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output

import nbmodelhub as mh
from tests.conftest import all_files, small_mlp, state_of


@pytest.fixture(scope="module")
def shell() -> Any:
    ip = start_ipython()
    ip.run_line_magic("load_ext", "nbmodelhub")
    return ip


@pytest.fixture
def ip(shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shell with a fresh repository (``%dlv init``) and a model ``model`` in its namespace."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    with capture_output():
        shell.run_line_magic("dlv", f"init {tmp_path / 'repo'}")
    shell.user_ns["model"] = small_mlp(0)
    shell.user_ns["repo_path"] = tmp_path / "repo"
    return shell


def dlv(ip: Any, line: str) -> Any:
    with capture_output() as out:
        value = ip.run_line_magic("dlv", line)
    dlv.stdout = out.stdout  # type: ignore[attr-defined]
    return value


def fails(ip: Any, line: str, match: str) -> None:
    """The magic raises one IPython UsageError (shown as one line, no traceback) whose text matches."""
    with pytest.raises(IPythonUsageError, match=match) as info, capture_output():
        ip.run_line_magic("dlv", line)
    assert "\n" not in str(info.value)


def cell_output(ip: Any, line: str) -> str:
    with capture_output() as out:
        ip.run_cell(line)
    return out.stdout + out.stderr


def repo(ip: Any) -> mh.Repository:
    return mh.open(ip.user_ns["repo_path"], read_only=True)


# -- parsing, help, errors -------------------------------------------------------------------------


def test_an_error_is_one_line_without_traceback(ip: Any) -> None:
    text = cell_output(ip, "%dlv desc nosuchmodel@3")
    assert "UsageError: dlv: " in text and "nosuchmodel" in text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1


def test_unknown_command_and_bad_arguments(ip: Any) -> None:
    fails(ip, "comit model -n x", "invalid choice: 'comit'")
    fails(ip, "commit model", "the following arguments are required: -n/--name")
    fails(ip, 'commit model -n x -m "unclosed', "cannot read the line")


def test_help_prints_and_returns_nothing(ip: Any) -> None:
    assert dlv(ip, "") is None
    assert "commit" in dlv.stdout and "diff" in dlv.stdout  # type: ignore[attr-defined]
    assert dlv(ip, "commit --help") is None
    assert "--params" in dlv.stdout  # type: ignore[attr-defined]


def test_debug_shows_the_real_exception(ip: Any) -> None:
    with pytest.raises(mh.RefNotFound), capture_output():
        ip.run_line_magic("dlv", "--debug desc nosuchmodel")


# -- init, commit ------------------------------------------------------------------------------------


def test_init_switches_the_session_repository(ip: Any, tmp_path: Path) -> None:
    other = tmp_path / "other"
    value = dlv(ip, f"init {other}")
    assert isinstance(value, mh.Repository) and Path(value.location) == other
    assert "initialized an empty nbmodelhub repository" in dlv.stdout  # type: ignore[attr-defined]
    dlv(ip, "commit model -n m")
    assert [v.ref for v in mh.open(other, read_only=True).versions()] == ["m@1"]
    assert repo(ip).versions() == []
    from nbmodelhub.server.repositories import remembered

    assert remembered()[:2] == [str(other), str(tmp_path / "repo")]  # the sidebar offers both
    (tmp_path / "a-file").write_text("x")
    fails(ip, f"init {tmp_path / 'a-file'}", "dlv: ")


def test_commit_takes_objects_params_and_metrics_from_the_notebook(ip: Any) -> None:
    ip.user_ns["config"] = {"lr": 0.01, "layers": 2}
    ip.user_ns["history"] = {"loss": [[0, 1.5], [1, 0.7]]}
    v = dlv(ip, 'commit model -n mlp -m "first one" --params config bs=32 --metrics history acc=0.9')
    assert isinstance(v, mh.Version) and v.ref == "mlp@1" and v.message == "first one"
    assert v.params == {"lr": 0.01, "layers": 2, "bs": 32}
    assert v.metrics == {"loss": 0.7, "acc": 0.9}
    assert "committed mlp@1" in dlv.stdout  # type: ignore[attr-defined]
    loaded = repo(ip).load("mlp@1", framework="torch")
    for name, tensor in state_of(ip.user_ns["model"]).items():
        assert torch.equal(loaded[name], tensor)


def test_commit_a_file_path(ip: Any, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(state_of(small_mlp(3)), path)
    v = dlv(ip, f"commit {path} -n from-file")
    assert v.ref == "from-file@1" and len(v.tensors) == len(state_of(small_mlp(3)))


def test_commit_errors_store_nothing(ip: Any) -> None:
    before = all_files(ip.user_ns["repo_path"])
    fails(ip, "commit nothing_here -n m", "no such file: nothing_here .*variable of this notebook")
    fails(ip, "commit model -n m --params lr", "key=value pairs .* or the name of a dict")
    fails(ip, "commit model -n 'bad/name'", "dlv: ")
    ip.user_ns["not_a_model"] = 42
    fails(ip, "commit not_a_model -n m", "dlv: ")
    assert all_files(ip.user_ns["repo_path"]) == before


# -- the views ------------------------------------------------------------------------------------------


def two_versions(ip: Any) -> tuple[mh.Version, mh.Version]:
    a = dlv(ip, "commit model -n mlp -m one --params lr=0.1")
    ip.user_ns["model2"] = small_mlp(1)
    b = dlv(ip, "commit model2 -n mlp -m two --params lr=0.01")
    return a, b


def test_list_returns_a_version_table(ip: Any) -> None:
    from nbmodelhub.widgets.version_table import VersionTable

    a, b = two_versions(ip)
    table = dlv(ip, "list mlp")
    assert isinstance(table, VersionTable)
    assert [v.ref for v in table.versions] == [a.ref, b.ref]
    assert [v.ref for v in dlv(ip, "list mlp --last 1").versions] == [b.ref]
    assert dlv(ip, "list --json") is None and '"mlp@2"' in dlv.stdout  # type: ignore[attr-defined]


def test_log_returns_the_lineage(ip: Any) -> None:
    from nbmodelhub.widgets.lineage import Lineage

    two_versions(ip)
    assert isinstance(dlv(ip, "log mlp"), Lineage)
    fails(ip, "log nosuch", "nosuch")


def test_desc_returns_the_architecture_graph(ip: Any) -> None:
    from nbmodelhub.widgets.architecture import ArchitectureGraph

    a, _ = two_versions(ip)
    widget = dlv(ip, f"desc {a.ref}")
    assert isinstance(widget, ArchitectureGraph) and widget.data
    fails(ip, "desc mlp@9", "mlp@9")


def test_diff_returns_the_version_diff(ip: Any) -> None:
    from nbmodelhub.widgets.version_diff import VersionDiff

    a, b = two_versions(ip)
    widget = dlv(ip, f"diff {a.ref} {b.ref}")
    assert isinstance(widget, VersionDiff) and widget.data
    fails(ip, f"diff {a.ref} mlp@7", "mlp@7")


def test_desc_and_diff_of_snapshots(ip: Any) -> None:
    v = repo_rw(ip).commit(ip.user_ns["model"], name="snap", step=5, snapshots={0: small_mlp(3)})
    early, last = dlv(ip, f"desc {v.ref} --snapshot 0"), dlv(ip, f"desc {v.ref}")
    assert early.data["stats"]["0"]["mean"] != last.data["stats"]["0"]["mean"]
    expected = float(small_mlp(3)[0].weight.detach().mean())
    assert early.data["stats"]["0"]["tensors"]["weight"]["mean"] == pytest.approx(expected, abs=1e-4)
    diff = dlv(ip, f"diff {v.ref} {v.ref} --snapshot-a 0")
    assert diff.result.step_a == 0 and not diff.result.identical
    fails(ip, f"desc {v.ref} --snapshot 3", "3")


def test_hist_returns_histograms_of_one_or_two_versions(ip: Any) -> None:
    from nbmodelhub.widgets.histograms import WeightHistograms

    a, b = two_versions(ip)
    assert isinstance(dlv(ip, f"hist {a.ref}"), WeightHistograms)
    assert isinstance(dlv(ip, f"hist {a.ref} {b.ref} --bins 16"), WeightHistograms)
    fails(ip, "hist nosuch@1", "nosuch")
    fails(ip, f"hist {a.ref} --json", "drop --json")


# -- the other commands ----------------------------------------------------------------------------------


def test_eval_calls_notebook_functions(ip: Any) -> None:
    a, _ = two_versions(ip)
    ip.user_ns["data"] = torch.randn(8, ip.user_ns["model"][0].in_features)
    ip.user_ns["make"] = lambda: small_mlp(5)
    ip.user_ns["mean_out"] = lambda m, x: {"mean": float(m(x).mean().detach())}
    evaluation = dlv(ip, f"eval {a.ref} --function mean_out --data data --module make")
    expected = float(ip.user_ns["model"](ip.user_ns["data"]).mean().detach())
    assert evaluation.metrics["mean"] == pytest.approx(expected)
    assert [e.metrics for e in repo(ip).evaluations(a.ref)] == [evaluation.metrics]
    fails(ip, f"eval {a.ref} --function nosuch_fn", "this notebook defines no function 'nosuch_fn'")


def test_copy_tag_delete_return_versions(ip: Any) -> None:
    a, b = two_versions(ip)
    copied = dlv(ip, f"copy {a.ref} forked")
    assert copied.ref == "forked@1" and copied.parents == (a.id,)
    tagged = dlv(ip, f"tag {b.ref} best")
    assert tagged.id == b.id and repo(ip).get("mlp:best").id == b.id
    fails(ip, f"tag {a.ref} best", "best")
    deleted = dlv(ip, f"delete {a.ref}")
    assert deleted.id == a.id and [v.ref for v in repo(ip).versions("mlp")] == [b.ref]
    fails(ip, f"delete {a.ref}", "mlp@1")


def test_checkout_into_a_notebook_module_or_a_file(ip: Any, tmp_path: Path) -> None:
    a, _ = two_versions(ip)
    ip.user_ns["target"] = small_mlp(9)
    module = dlv(ip, f"checkout {a.ref} target")
    assert module is ip.user_ns["target"]
    for name, tensor in state_of(ip.user_ns["model"]).items():
        assert torch.equal(state_of(module)[name], tensor)
    out = tmp_path / "out.safetensors"
    dlv(ip, f"checkout {a.ref} {out}")
    assert out.stat().st_size > 0
    ip.user_ns["number"] = 3
    fails(ip, f"checkout {a.ref} number", "not a torch module")
    fails(ip, f"checkout {a.ref} {out}", "already exists")


def test_add_files_and_pull_files(ip: Any, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    dlv(ip, f"add {script}")
    v = dlv(ip, "commit model -n with-files")
    assert [f.name for f in v.files] == ["train.py"]
    assert dlv(ip, f"files {v.ref}") is None and "train.py" in dlv.stdout  # type: ignore[attr-defined]
    dest = tmp_path / "pulled"
    dlv(ip, f"pull-files {v.ref} {dest}")
    assert (dest / "train.py").read_text() == "print('hi')\n"
    fails(ip, f"add {tmp_path / 'missing.py'}", "missing.py")


def test_gc_and_fsck_return_their_reports(ip: Any) -> None:
    a, _ = two_versions(ip)
    dlv(ip, f"delete {a.ref}")
    gc = dlv(ip, "gc")
    assert gc.removed and gc.bytes_freed > 0
    report = dlv(ip, "fsck")
    assert report.ok and report.versions == 1


# -- %%dql -------------------------------------------------------------------------------------------------


def dql(ip: Any, line: str, cell: str) -> Any:
    with capture_output():
        return ip.run_cell_magic("dql", line, cell)


def test_dql_select_shows_a_version_table_and_keeps_the_result(ip: Any) -> None:
    from nbmodelhub.widgets.version_table import VersionTable

    _, b = two_versions(ip)
    table = dql(ip, "-o found", 'select m where m.name = "mlp" and m.params.lr < 0.05')
    assert isinstance(table, VersionTable) and [v.ref for v in table.versions] == [b.ref]
    assert ip.user_ns["found"].kind == "select" and [v.ref for v in ip.user_ns["found"].versions] == [b.ref]


def test_dql_slice_returns_derived_models(ip: Any) -> None:
    two_versions(ip)
    result = dql(ip, "", 'slice m2 from m1 where m1.name = "mlp" mutate m2.input = m1["0"] and m2.output = m1["1"]')
    assert result.kind == "slice" and len(result.models) == 1  # the model's latest version, mlp@2
    state = state_of(result.models[0].module)
    assert set(state) == {"0.weight", "0.bias"}
    assert torch.equal(state["0.weight"], ip.user_ns["model2"][0].weight.detach())


def test_dql_syntax_error_points_at_the_column(ip: Any) -> None:
    with pytest.raises(IPythonUsageError) as info, capture_output():
        ip.run_cell_magic("dql", "", 'select m wher m.name = "x"')
    message = str(info.value)
    assert message.startswith("dql: ") and "^" in message and "line 1" in message
    with pytest.raises(IPythonUsageError, match="usage: %%dql"), capture_output():
        ip.run_cell_magic("dql", "--bogus", "select m")


# -- query, archive, runs, and the hub commands through %dlv -----------------------------------------------


def test_query_magic_returns_the_query_result(ip: Any) -> None:
    _, b = two_versions(ip)
    result = dlv(ip, 'query "select m where m.params.lr < 0.05"')
    assert result.kind == "select" and [v.ref for v in result.versions] == [b.ref]
    with pytest.raises(IPythonUsageError, match=r"(?s)dlv: .*line 1.*\^"), capture_output():
        ip.run_line_magic("dlv", 'query "select m wher x"')


def test_archive_magic_returns_its_report_and_keeps_every_bit(ip: Any) -> None:
    a, _ = two_versions(ip)
    report = dlv(ip, "archive mlp --max-chain 2")
    assert report.versions == 2 and report.tensors > 0
    loaded = repo(ip).load(a.ref, framework="torch")
    for name, tensor in state_of(ip.user_ns["model"]).items():
        assert torch.equal(loaded[name], tensor)
    fails(ip, "archive", "name the MODEL to archive, or give --all")


def test_runs_magic_shows_runs_and_run_commits_an_interrupted_one(ip: Any) -> None:
    from nbmodelhub.widgets.runs_compare import RunsCompare

    r = mh.run("trained", params={"lr": 0.1}, repo=repo_rw(ip))
    r.log(0, loss=1.0)
    r.log(1, loss=0.5)
    r.snapshot(ip.user_ns["model"], step=1)
    r.stop()  # as if the process had died: interrupted, recoverable
    widget = dlv(ip, "runs")
    assert isinstance(widget, RunsCompare) and r.id in json.dumps(widget.data)
    runs = dlv(ip, "runs --json")
    assert [(x.id, x.status) for x in runs] == [(r.id, "interrupted")]
    version = dlv(ip, f"run commit {r.id}")
    assert version.ref == "trained@1" and version.curves["loss"][-1][1] == 0.5
    fails(ip, "run commit nosuchrun", "nosuchrun")


def repo_rw(ip: Any) -> mh.Repository:
    return mh.open(ip.user_ns["repo_path"])


def test_hub_commands_through_the_magic(ip: Any, tmp_path: Path) -> None:
    a, _ = two_versions(ip)
    hub = tmp_path / "hub"
    assert dlv(ip, f"remote add origin {hub}") == {"origin": str(hub)}
    dlv(ip, f"publish {a.ref} --hub origin --description 'a small MLP'")
    hits = dlv(ip, "search mlp --hub origin")
    assert [h.ref for h in hits] == [a.ref]
    assert "a small MLP" in dlv(ip, f"card {a.ref} --hub origin").to_markdown()
    dlv(ip, f"init {tmp_path / 'elsewhere'}")  # a second repository pulls from the hub
    pulled = dlv(ip, f"pull {a.ref} --hub {hub} --as mlp-copy")
    assert pulled.ref == "mlp-copy@1"
    assert mh.open(tmp_path / "elsewhere", read_only=True).get("mlp-copy@1").id == a.id
    fails(ip, f"pull nosuch@1 --hub {hub}", "nosuch")
    weights = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file(state_of(small_mlp(4)), str(weights))
    imported = dlv(ip, f"import {weights} -n imported")
    assert imported.ref == "imported@1" and [f.name for f in imported.files] == ["w.safetensors"]
    fails(ip, f"import {tmp_path / 'missing.safetensors'} -n x", "missing.safetensors")
