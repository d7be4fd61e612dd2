"""The ``dlv`` command: real repositories on disk, real (small) torch models, real checkpoint files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import nbmodelhub as mh
from nbmodelhub import cli, render

ROOT = Path(__file__).resolve().parent.parent


# -- helpers ------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never touch the user's ~/.modelhub, and keep progress bars out of captured output.
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "default-repo"))
    monkeypatch.setenv("TQDM_DISABLE", "1")


def mlp(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == torch.bfloat16:
        a, b = a.view(torch.int16), b.view(torch.int16)
    return a.contiguous().numpy().tobytes() == b.contiguous().numpy().tobytes()


class Dlv:
    """Runs ``dlv --repo <repo> …`` in-process and hands back (exit code, stdout, stderr)."""

    def __init__(self, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.repo = repo
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(["--repo", str(self.repo), *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, *argv: str) -> str:
        code, out, err = self(*argv)
        assert code == 0, (argv, out, err)
        return out

    def json(self, *argv: str) -> Any:
        return json.loads(self.ok(*argv, "--json"))


@pytest.fixture
def dlv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Dlv:
    return Dlv(tmp_path / "repo", capsys)


@pytest.fixture
def two_checkpoints(tmp_path: Path) -> tuple[Path, Path, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """v1 as .safetensors; v2 as .pt with two tensors changed by very different relative amounts."""
    model = mlp()
    first = state(model)
    save_file(first, tmp_path / "v1.safetensors")
    head, body = model[2], model[0]
    assert isinstance(head, torch.nn.Linear) and isinstance(body, torch.nn.Linear)
    with torch.no_grad():
        head.weight.mul_(1.5)  # +50 %
        body.bias.add_(body.bias.abs().max() * 1e-3)  # a small change
    second = state(model)
    torch.save(second, tmp_path / "v2.pt")
    return tmp_path / "v1.safetensors", tmp_path / "v2.pt", first, second


@pytest.fixture
def committed(dlv: Dlv, two_checkpoints: Any) -> Any:
    v1, v2, first, second = two_checkpoints
    dlv.ok("commit", str(v1), "-n", "mlp", "-m", "baseline", "--params", "lr=1e-4", "bs=32", "--metrics", "acc=0.5")
    dlv.ok(
        "commit", str(v2), "-n", "mlp", "-m", "longer training", "--params", "lr=3e-4", "bs=32", "--metrics", "acc=0.75"
    )
    return first, second


# -- commit, list, log, desc, diff ---------------------------------------------------------------------


def test_commit_prints_the_new_version(dlv: Dlv, two_checkpoints: Any) -> None:
    v1, v2, _, _ = two_checkpoints
    out = dlv.ok("commit", str(v1), "-n", "mlp", "-m", "baseline")
    assert out.startswith("committed mlp@1 (")
    assert "4 tensors, 46 parameters, 184 B, first version" in out
    data = dlv.json("commit", str(v2), "-n", "mlp", "-m", "second")
    assert data["ref"] == "mlp@2" and data["parents"] == ["mlp@1"]
    assert data["tensors"] == 4 and data["parameters"] == 46
    assert data["new_tensors"] == 2  # 2.weight and 0.bias changed, the other two are shared
    assert data["framework"] == "torch" and data["source"] == "v2.pt"


def test_list_shows_every_version_with_its_params_metrics_and_tags(dlv: Dlv, committed: Any) -> None:
    dlv.ok("tag", "mlp@2", "best")
    out = dlv.ok("list")
    lines = out.splitlines()
    assert lines[0].split() == ["ref", "id", "created", "author", "message", "params", "metrics", "tags"]
    row1 = next(ln for ln in lines if ln.startswith("mlp@1 "))
    row2 = next(ln for ln in lines if ln.startswith("mlp@2 "))
    assert "baseline" in row1 and "lr=0.0001" in row1 and "bs=32" in row1 and "acc=0.5" in row1
    assert "longer training" in row2 and "lr=0.0003" in row2 and "acc=0.75" in row2 and row2.endswith("best")
    # Columns are aligned: the id column starts at the same offset on every row.
    assert len({ln.index(ln.split()[1]) for ln in lines[2:]}) == 1

    data = dlv.json("list")
    assert [v["ref"] for v in data] == ["mlp@1", "mlp@2"]
    assert data[1]["tags"] == ["best"] and data[1]["params"] == {"lr": 0.0003, "bs": 32}
    assert [v["ref"] for v in dlv.json("list", "mlp", "--last", "1")] == ["mlp@2"]
    assert [v["ref"] for v in dlv.json("list", "--message", "BASE")] == ["mlp@1"]


def test_log_lists_the_lineage_newest_first_with_cross_model_parents(dlv: Dlv, committed: Any) -> None:
    dlv.ok("copy", "mlp@1", "mlp-ft", "-m", "fine-tune start")
    out = dlv.ok("log", "mlp-ft")
    rows = [ln.split() for ln in out.splitlines()[2:] if ln.strip() and not ln.startswith("*  =")]
    assert rows[0][:2] == ["*", "mlp-ft@1"] and "mlp@1" in rows[0]  # parent shown by its ref
    assert rows[1][:2] == ["o", "mlp@1"]
    assert "ancestor in another model" in out

    data = dlv.json("log", "mlp")
    assert [v["ref"] for v in data] == ["mlp@2", "mlp@1"]
    assert data[0]["parents"] == ["mlp@1"] and data[1]["parents"] == []


def test_desc_shows_header_and_per_layer_table(dlv: Dlv, committed: Any) -> None:
    out = dlv.ok("desc", "mlp@2")
    assert "version    mlp@2" in out
    assert "message    longer training" in out
    assert "parents    mlp@1" in out
    assert "params     lr=0.0003 bs=32" in out or "params     bs=32 lr=0.0003" in out
    layer0 = next(ln for ln in out.splitlines() if ln.startswith("0 "))
    assert layer0.split()[1] == "36" and "weight float32[4, 8]" in layer0 and "bias float32[4]" in layer0
    total = next(ln for ln in out.splitlines() if ln.startswith("total"))
    assert "46" in total and "4 tensors" in total and "184 B" in total

    data = dlv.json("desc", "mlp@2")
    assert data["parameters"] == 46 and data["version"]["ref"] == "mlp@2"
    assert {layer["layer"]: layer["parameters"] for layer in data["layers"]} == {"0": 36, "2": 10}


def test_diff_lists_only_changed_tensors_sorted_by_relative_change(dlv: Dlv, committed: Any) -> None:
    first, second = committed
    data = dlv.json("diff", "mlp@1", "mlp@2")
    assert [c["name"] for c in data["changed"]] == ["2.weight", "0.bias"]  # 50 % before ~0.1 %
    assert data["unchanged"] == 2 and data["added"] == [] and data["removed"] == [] and data["reshaped"] == []
    w1, w2 = first["2.weight"].double(), second["2.weight"].double()
    assert data["changed"][0]["l2"] == pytest.approx(float((w2 - w1).norm()), rel=1e-6)
    assert data["changed"][0]["relative"] == pytest.approx(0.5, rel=1e-5)
    assert data["params"] == {"lr": {"from": 0.0001, "to": 0.0003}}  # bs did not change
    assert data["metrics"] == {"acc": {"a": 0.5, "b": 0.75}}

    out = dlv.ok("diff", "mlp@1", "mlp@2")
    assert "diff mlp@1 → mlp@2" in out
    changed = [ln.split() for ln in out.splitlines() if ln.startswith("  2.weight") or ln.startswith("  0.bias")]
    assert [c[0] for c in changed] == ["2.weight", "0.bias"]
    assert changed[0][-1] == "50.0%"
    assert "0.weight" not in out and "2.bias" not in out  # unchanged tensors are only counted
    assert "unchanged: 2 tensors" in out
    assert "  lr  0.0001  →  0.0003" in out
    assert "bs" not in out.split("params:")[1].split("metric")[0]
    acc = next(ln for ln in out.splitlines() if ln.startswith("acc"))
    assert acc.split() == ["acc", "0.5", "0.75", "+0.25"]

    full = dlv.json("diff", "mlp@1", "mlp@2", "--all-params")
    assert full["params"]["bs"] == {"from": 32, "to": 32}


def test_diff_reports_added_removed_and_reshaped(dlv: Dlv, tmp_path: Path) -> None:
    a = {"x.weight": torch.ones(2, 3), "gone": torch.zeros(2)}
    b = {"x.weight": torch.ones(3, 3), "new": torch.zeros(4)}
    save_file(a, tmp_path / "a.safetensors")
    save_file(b, tmp_path / "b.safetensors")
    dlv.ok("commit", str(tmp_path / "a.safetensors"), "-n", "shapes")
    dlv.ok("commit", str(tmp_path / "b.safetensors"), "-n", "shapes")
    data = dlv.json("diff", "shapes@1", "shapes@2")
    assert data["added"] == ["new"] and data["removed"] == ["gone"] and data["changed"] == []
    assert data["reshaped"] == [{"name": "x.weight", "from": ["float32", [2, 3]], "to": ["float32", [3, 3]]}]
    out = dlv.ok("diff", "shapes@1", "shapes@2")
    assert "added (1): new" in out and "removed (1): gone" in out
    assert "x.weight  float32[2, 3]  →  float32[3, 3]" in out


# -- params and metrics ------------------------------------------------------------------------------------


def test_params_and_metrics_values_are_parsed_as_json_else_strings(dlv: Dlv, two_checkpoints: Any) -> None:
    v1 = str(two_checkpoints[0])
    data = dlv.json(
        "commit",
        v1,
        "-n",
        "p",
        "--params",
        "lr=1e-4",
        "bs=32",
        "opt=adam",
        "amp=true",
        "sizes=[64,128]",
        'tag="42"',
        "note=two words",
        "--params",
        "empty=",
        "--metrics",
        "acc=0.91",
        "loss=[[0,2.5],[10,1.25]]",
    )
    assert data["params"] == {
        "lr": 0.0001,
        "bs": 32,
        "opt": "adam",
        "amp": True,
        "sizes": [64, 128],
        "tag": "42",
        "note": "two words",
        "empty": "",
    }
    assert data["metrics"] == {"acc": 0.91, "loss": 1.25}
    desc = dlv.json("desc", "p")
    assert desc["curves"] == {"loss": [[0, 2.5], [10, 1.25]]}


def test_non_finite_values_are_metrics_but_not_params(dlv: Dlv, two_checkpoints: Any) -> None:
    data = dlv.json("commit", str(two_checkpoints[0]), "-n", "nf", "--params", "clip=Infinity", "--metrics", "loss=NaN")
    assert data["params"] == {"clip": "Infinity"}  # a string, as typed
    assert data["metrics"] == {"loss": "NaN"}  # strict JSON: the store's spelling of a NaN number
    assert "loss=nan" in dlv.ok("list")


def test_params_must_be_key_value_pairs(dlv: Dlv, two_checkpoints: Any) -> None:
    code, out, err = dlv("commit", str(two_checkpoints[0]), "-n", "p", "--params", "lr")
    assert code == 2 and out == ""
    assert err.strip() == "dlv: error: --params takes key=value pairs (as in --params lr=1e-4 bs=32), got 'lr'"
    assert dlv.json("list") == []  # nothing was committed


def test_commit_with_step_parent_and_author(dlv: Dlv, committed: Any, two_checkpoints: Any) -> None:
    data = dlv.json(
        "commit", str(two_checkpoints[1]), "-n", "other", "--parent", "mlp@1", "--step", "500", "--author", "ada"
    )
    assert data["parents"] == ["mlp@1"] and data["snapshots"] == [500] and data["author"] == "ada"
    assert data["new_tensors"] == 2
    out = dlv.ok("desc", "other")
    assert "snapshots  1 at steps 500" in out


# -- tags, copy, delete, gc, fsck ----------------------------------------------------------------------------


def test_tag_and_tag_reference(dlv: Dlv, committed: Any) -> None:
    assert dlv.ok("tag", "mlp@1", "stable").strip() == "tagged mlp@1 as mlp:stable"
    assert dlv.json("desc", "mlp:stable")["version"]["ref"] == "mlp@1"
    code, _, err = dlv("tag", "mlp@2", "stable")
    assert code == 2 and "already points at mlp@1" in err and "--force" in err
    assert dlv.json("tag", "mlp@2", "stable", "--force")["ref"] == "mlp@2"
    assert dlv.json("desc", "mlp:stable")["version"]["ref"] == "mlp@2"
    code, _, err = dlv("desc", "mlp:stabel")
    assert code == 1 and "mlp:stable" in err


def test_copy_shares_data_and_records_the_source(dlv: Dlv, committed: Any) -> None:
    out = dlv.ok("copy", "mlp@2", "mlp-copy")
    assert out.startswith("copied mlp@2 to mlp-copy@1 (")
    data = dlv.json("desc", "mlp-copy")
    assert data["version"]["parents"] == ["mlp@2"] and data["version"]["message"] == "copy of mlp@2"
    diff = dlv.json("diff", "mlp@2", "mlp-copy@1")
    assert diff["changed"] == [] and diff["unchanged"] == 4


def test_delete_then_gc_frees_only_unused_data(dlv: Dlv, committed: Any, tmp_path: Path) -> None:
    _, second = committed
    out = dlv.ok("delete", "mlp@1")
    assert out.startswith("deleted mlp@1 (")
    assert [v["ref"] for v in dlv.json("list")] == ["mlp@2"]
    code, _, err = dlv("desc", "mlp@1")
    assert code == 1 and "mlp@1 was deleted" in err

    report = dlv.json("gc")
    assert report["removed"].get("tensors") == 2  # the two tensors only mlp@1 had
    assert report["bytes_freed"] > 0
    assert dlv.ok("gc").startswith("nothing to remove")
    assert dlv.ok("fsck").startswith("OK: 1 version")
    dlv.ok("checkout", "mlp", str(tmp_path / "after-gc.pt"))
    got = torch.load(tmp_path / "after-gc.pt", weights_only=True)
    assert all(same_bits(second[k], got[k]) for k in second)


def test_fsck_ok_text_and_json(dlv: Dlv, committed: Any) -> None:
    out = dlv.ok("fsck")
    assert out.startswith("OK: 2 versions, ")
    data = dlv.json("fsck")
    assert data["ok"] is True and data["problems"] == [] and data["versions"] == 2


def test_fsck_reports_every_problem_and_exits_1(dlv: Dlv, committed: Any) -> None:
    chunks = sorted(p for p in (dlv.repo / "objects" / "tensors").rglob("c/*") if p.is_file())
    assert chunks
    chunks[0].write_bytes(b"garbage")
    code, out, err = dlv("fsck")
    assert code == 1 and out.strip() and "Traceback" not in err
    assert "fsck found" in err
    code, out, _ = dlv("fsck", "--json")
    assert code == 1 and json.loads(out)["ok"] is False


# -- files ---------------------------------------------------------------------------------------------------


def test_add_commit_files_pull_files_round_trip(
    dlv: Dlv, two_checkpoints: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "train.py").write_text("print('training')\n")
    (work / "data" / "labels.csv").write_bytes(b"a,b\n" * 500)
    (work / "notes.md").write_text("# notes\n")
    monkeypatch.chdir(work)

    out = dlv.ok("add", "train.py", "data")
    assert "staged train.py (18 B)" in out and "staged data/labels.csv (2.0 kB)" in out
    dlv.ok("commit", str(two_checkpoints[0]), "-n", "withfiles", "--files", "notes.md")

    listing = dlv.json("files", "withfiles")
    assert [f["name"] for f in listing] == ["data/labels.csv", "notes.md", "train.py"]
    assert [f["name"] for f in dlv.json("files", "withfiles", "--include", "*.py")] == ["train.py"]
    assert [f["name"] for f in dlv.json("files", "withfiles", "--sort", "size")][-1] == "data/labels.csv"
    text = dlv.ok("files", "withfiles")
    assert "data/labels.csv  2.0 kB" in text and "total (3 files)" in text

    dest = tmp_path / "pulled"
    out = dlv.ok("pull-files", "withfiles", str(dest))
    assert "3 files pulled into" in out
    for name in ("train.py", "data/labels.csv", "notes.md"):
        assert (dest / name).read_bytes() == (work / name).read_bytes()
    only = tmp_path / "only"
    assert dlv.json("pull-files", "withfiles", str(only), "train.py") == [str((only / "train.py").resolve())]
    assert sorted(p.name for p in only.rglob("*")) == ["train.py"]

    code, _, err = dlv("pull-files", "withfiles", str(only), "missing.txt")
    assert code == 2 and "has no file 'missing.txt'" in err

    # Staged files went with that commit; the next commit starts clean.
    assert dlv.json("commit", str(two_checkpoints[1]), "-n", "withfiles")["files"] == []


def test_add_missing_path_is_a_clear_error(dlv: Dlv, tmp_path: Path) -> None:
    code, out, err = dlv("add", str(tmp_path / "nope.txt"))
    assert code == 2 and out == ""
    assert err.startswith("dlv: error: no such file or folder:") and err.count("\n") == 1


# -- checkout ------------------------------------------------------------------------------------------------


def test_checkout_safetensors_and_pt_are_bit_exact(dlv: Dlv, committed: Any, tmp_path: Path) -> None:
    first, second = committed
    out = dlv.ok("checkout", "mlp@1", str(tmp_path / "one.safetensors"))
    assert "wrote mlp@1 to" in out and "4 tensors, 184 B" in out
    got = load_file(tmp_path / "one.safetensors")
    assert sorted(got) == sorted(first) and all(same_bits(first[k], got[k]) for k in first)

    data = dlv.json("checkout", "mlp@2", str(tmp_path / "two.pt"))
    assert data["tensors"] == 4 and data["ref"] == "mlp@2"
    got = torch.load(tmp_path / "two.pt", weights_only=True)
    assert sorted(got) == sorted(second) and all(same_bits(second[k], got[k]) for k in second)
    model = mlp(seed=99)
    model.load_state_dict(got, strict=True)

    code, _, err = dlv("checkout", "mlp@2", str(tmp_path / "two.pt"))
    assert code == 2 and "already exists" in err and "--force" in err
    dlv.ok("checkout", "mlp@1", str(tmp_path / "two.pt"), "--force")
    assert all(same_bits(first[k], v) for k, v in torch.load(tmp_path / "two.pt", weights_only=True).items())
    code, _, err = dlv("checkout", "mlp@1", str(tmp_path / "weights.npz"))
    assert code == 2 and ".safetensors or .pt" in err


def test_checkout_keeps_odd_dtypes_exact(dlv: Dlv, tmp_path: Path) -> None:
    weights = {
        "emb": torch.randn(5, 3).to(torch.bfloat16),
        "half": torch.tensor([-0.0, float("nan"), float("inf"), 1e-8]).half(),
        "steps": torch.arange(3, dtype=torch.int64),
    }
    torch.save(weights, tmp_path / "odd.pt")
    dlv.ok("commit", str(tmp_path / "odd.pt"), "-n", "odd")
    dlv.ok("checkout", "odd", str(tmp_path / "odd.safetensors"))
    got = load_file(tmp_path / "odd.safetensors")
    assert all(same_bits(weights[k], got[k]) for k in weights)


def test_checkout_of_tied_weights(dlv: Dlv, tmp_path: Path) -> None:
    shared = torch.randn(6, 4)
    weights = {"wte.weight": shared, "lm_head.weight": shared, "ln.bias": torch.zeros(4)}
    torch.save(weights, tmp_path / "tied.pt")
    dlv.ok("commit", str(tmp_path / "tied.pt"), "-n", "tied")
    assert "lm_head.weight = wte.weight" in dlv.ok("desc", "tied")

    out = dlv.ok("checkout", "tied", str(tmp_path / "tied.safetensors"))
    assert "tied names left out" in out and "lm_head.weight = wte.weight" in out
    got = load_file(tmp_path / "tied.safetensors")
    assert sorted(got) == ["ln.bias", "wte.weight"] and same_bits(shared, got["wte.weight"])
    with safe_open(tmp_path / "tied.safetensors", framework="pt") as f:
        assert json.loads(f.metadata()["nbmodelhub.ties"]) == {"lm_head.weight": "wte.weight"}

    dlv.ok("checkout", "tied", str(tmp_path / "untied.safetensors"), "--untie")
    got = load_file(tmp_path / "untied.safetensors")
    assert sorted(got) == sorted(weights) and all(same_bits(weights[k], got[k]) for k in weights)

    dlv.ok("checkout", "tied", str(tmp_path / "again.pt"))
    got = torch.load(tmp_path / "again.pt", weights_only=True)
    assert got["lm_head.weight"].data_ptr() == got["wte.weight"].data_ptr()  # torch.save keeps the tie
    assert same_bits(shared, got["lm_head.weight"])


def test_checkout_snapshot_that_does_not_exist(dlv: Dlv, committed: Any, tmp_path: Path) -> None:
    code, _, err = dlv("checkout", "mlp", str(tmp_path / "x.pt"), "--snapshot", "7")
    assert code == 2 and "no snapshot at step 7" in err
    assert not (tmp_path / "x.pt").exists() and not list(tmp_path.glob(".x.pt.*"))


# -- init -------------------------------------------------------------------------------------------------------


def test_init_creates_then_reopens(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    where = tmp_path / "proj" / "models"
    assert cli.main(["init", str(where)]) == 0
    out = capsys.readouterr().out
    assert f"initialized an empty nbmodelhub repository at {where}" in out
    assert (where / "zarr.json").is_file()
    assert cli.main(["init", str(where), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {"location": str(where), "created": False, "models": 0, "versions": 0}


def test_default_repository_is_modelhub_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, two_checkpoints: Any
) -> None:
    assert cli.main(["commit", str(two_checkpoints[0]), "-n", "dflt"]) == 0
    assert (tmp_path / "default-repo" / "zarr.json").is_file()
    capsys.readouterr()
    assert cli.main(["list", "--json"]) == 0
    assert [v["ref"] for v in json.loads(capsys.readouterr().out)] == ["dflt@1"]


def test_options_after_the_command(dlv: Dlv, committed: Any, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli.main(["list", "--repo", str(dlv.repo), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert cli.main(["--json", "--repo", str(dlv.repo), "list"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


# -- errors -----------------------------------------------------------------------------------------------------


def test_unknown_ref_exits_1_and_suggests_the_closest(dlv: Dlv, committed: Any) -> None:
    code, out, err = dlv("desc", "mlp@7")
    assert code == 1 and out == ""
    assert err.startswith("dlv: error: no version 'mlp@7'; closest: ") and "mlp@1" in err and "mlp@2" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    code, _, err = dlv("diff", "mpl", "mlp@2")
    assert code == 1 and "closest: mlp" in err


def test_bad_name_exits_2(dlv: Dlv, two_checkpoints: Any) -> None:
    code, out, err = dlv("commit", str(two_checkpoints[0]), "-n", "bad/name")
    assert code == 2 and out == ""
    assert err.startswith("dlv: error: invalid model name 'bad/name'") and err.count("\n") == 1
    code, _, err = dlv("tag", "bad/name@1", "x")
    assert code in (1, 2) and err.startswith("dlv: error:")


def test_missing_source_file_is_a_clear_error(dlv: Dlv, tmp_path: Path) -> None:
    code, out, err = dlv("commit", str(tmp_path / "nope.safetensors"), "-n", "m")
    assert code == 2 and out == ""
    assert err == f"dlv: error: no such file: {tmp_path / 'nope.safetensors'} (commit a .safetensors or .pt file)\n"
    not_weights = tmp_path / "notes.txt"
    not_weights.write_text("hi")
    code, _, err = dlv("commit", str(not_weights), "-n", "m")
    assert code == 2 and "expected a .safetensors" in err


def test_repo_pointing_at_a_file_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a repository")
    for argv in (["list"], ["init"], ["fsck"]):
        assert cli.main(["--repo", str(a_file), *argv]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err == f"dlv: error: {a_file} is a file, not a repository folder: give a folder path\n"
    assert a_file.read_text() == "not a repository"


def test_reading_a_repository_that_does_not_exist_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "typo"
    assert cli.main(["--repo", str(missing), "list"]) == 1
    assert "no repository at" in capsys.readouterr().err
    assert not missing.exists()


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["list", "--last", "many"]) == 2
    assert cli.main(["commit", "x.pt"]) == 2  # -n is required
    err = capsys.readouterr().err
    assert "dlv: error: argument --last: invalid int value: 'many'" in err and "Traceback" not in err
    assert cli.main(["--help"]) == 0


def test_unexpected_errors_are_one_line_unless_debug(dlv: Dlv, committed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(mh.Repository, "versions", broken)
    code, out, err = dlv("list")
    assert code == 1 and out == ""
    assert err == "dlv: error: RuntimeError: disk on fire (run with --debug for the traceback)\n"
    code, _, err = dlv("--debug", "list")
    assert code == 1 and "Traceback" in err and "disk on fire" in err


def test_keyboard_interrupt_exits_130_quietly(dlv: Dlv, committed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(mh.Repository, "describe", interrupted)
    code, out, err = dlv("desc", "mlp")
    assert (code, out, err) == (130, "", "")


def test_model_hub_errors_keep_their_exit_code_with_debug(dlv: Dlv, committed: Any) -> None:
    code, _, err = dlv("--debug", "desc", "nothing-here")
    assert code == 1 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("dlv: error: no version")


# -- a real process ------------------------------------------------------------------------------------------------


def test_real_subprocess(tmp_path: Path, two_checkpoints: Any) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MODELHUB_PATH"] = str(tmp_path / "sub-repo")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nbmodelhub", *argv], capture_output=True, text=True, env=env, timeout=120
        )

    # One process does the real work; the rest only check codes and that no traceback leaks.
    done = run("commit", str(two_checkpoints[0]), "-n", "sub", "--params", "lr=0.1", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"] == {"lr": 0.1}

    for argv, code, text in (
        (["desc", "sbu"], 1, "closest: sub"),
        (["commit", str(two_checkpoints[0]), "-n", "no:pe"], 2, "invalid model name"),
        (["--repo", str(two_checkpoints[0]), "list"], 1, "is a file, not a repository folder"),
    ):
        proc = run(*argv)
        assert proc.returncode == code, (argv, proc.stderr)
        assert text in proc.stderr and "Traceback" not in proc.stderr and proc.stdout == ""


# -- rendering -----------------------------------------------------------------------------------------------------


def test_render_helpers() -> None:
    assert render.human_count(46) == "46"
    assert render.human_count(124_439_808) == "124.4M"
    assert render.human_count(1_500) == "1.5K"
    assert render.human_bytes(184) == "184 B"
    assert render.human_bytes(497_759_232) == "497.8 MB"
    assert render.percent(0.5) == "50.0%" and render.percent(0.00123) == "0.12%" and render.percent(0) == "0%"
    assert render.percent(float("inf")).startswith("∞")
    assert render.compact_kv({"lr": 1e-4, "opt": "adam", "amp": True}) == "lr=0.0001 opt=adam amp=true"
    assert render.truncate("a long message here", 8) == "a long …"
    assert render.jsonable({"x": float("nan"), "y": (1, float("-inf"))}) == {"x": "NaN", "y": [1, "-Infinity"]}
    text = render.table(["name", "n"], [["a", 1], ["bbb", 22]], align="lr")
    assert text.splitlines() == ["name   n", "----  --", "a      1", "bbb   22"]
