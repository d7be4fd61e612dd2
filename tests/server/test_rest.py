"""The sidebar's REST endpoints against a real Jupyter server and a real repository (read-only mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import nbmodelhub as mh
from nbmodelhub.server import remember


async def test_no_token_is_refused(http_server_client: Any, jp_base_url: str) -> None:
    for path in ("nbmodelhub/models", "nbmodelhub/versions?model=mlp", "nbmodelhub/version?ref=mlp@1"):
        response = await http_server_client.fetch(jp_base_url + path, raise_error=False)
        assert response.code == 403, path
    response = await http_server_client.fetch(
        jp_base_url + "nbmodelhub/tag", method="POST", body='{"ref": "mlp@1", "tag": "x"}', raise_error=False
    )
    assert response.code == 403


async def test_repositories_offer_the_default(api: Any, repo_dir: Path) -> None:
    status, body = await api("repositories")
    assert status == 200
    assert body["read_only"] is True
    assert body["repositories"][0] == {"name": "default", "location": str(repo_dir.resolve()), "source": "default"}


async def test_models_with_counts_tags_and_latest(api: Any) -> None:
    status, body = await api("models")
    assert status == 200
    by_name = {m["name"]: m for m in body["models"]}
    assert sorted(by_name) == ["cnn", "mlp", "mlp-ft"]
    assert by_name["mlp"]["versions"] == 3
    assert by_name["mlp"]["latest"] == 3
    assert by_name["mlp"]["tags"] == {"best": 2}
    assert by_name["mlp-ft"]["message"] == "fine-tune on B"
    assert by_name["cnn"]["running"] == 0


async def test_versions_page_newest_first(api: Any) -> None:
    status, first = await api("versions", model="mlp", limit=2)
    assert status == 200
    assert first["total"] == 3
    assert [r["ref"] for r in first["rows"]] == ["mlp@3", "mlp@2"]
    assert first["rows"][1]["tags"] == ["best"]
    assert first["rows"][0]["params"] == {"lr": 0.1 / 3, "batch": 32}
    _, second = await api("versions", model="mlp", limit=2, offset=2)
    assert [r["ref"] for r in second["rows"]] == ["mlp@1"]
    _, oldest_first = await api("versions", model="mlp", order="asc", limit=1, offset=1)
    assert [r["ref"] for r in oldest_first["rows"]] == ["mlp@2"]


async def test_versions_of_all_models_paged_sorted_and_filtered(api: Any) -> None:
    seen = []
    for offset in (0, 2, 4):
        status, page = await api("versions", sort="created", order="asc", limit=2, offset=offset)
        assert status == 200 and page["total"] == 5
        seen += [r["ref"] for r in page["rows"]]
    assert seen == ["mlp@1", "mlp@2", "mlp@3", "mlp-ft@1", "cnn@1"]
    _, by_acc = await api("versions", sort="metric:acc", order="desc", limit=3)
    assert [r["ref"] for r in by_acc["rows"]] == ["mlp-ft@1", "mlp@3", "mlp@2"]
    _, found = await api("versions", q="FINE-tune")
    assert [r["ref"] for r in found["rows"]] == ["mlp-ft@1"]
    _, tagged = await api("versions", q="best")
    assert [r["ref"] for r in tagged["rows"]] == ["mlp@2"]


async def test_bad_input_gets_a_status_and_a_message(api: Any) -> None:
    status, body = await api("version", ref="mlp@9")
    assert status == 404
    assert "mlp@9" in body["message"] and "closest" in body["message"]
    status, body = await api("versions", model="nope")
    assert status == 404 and "nope" in body["message"]
    status, body = await api("version", ref="mlp@x")
    assert status == 400 and "version number" in body["message"]
    status, body = await api("versions", model="mlp", limit=0)
    assert status == 400 and "limit" in body["message"]
    status, body = await api("versions", sort="colour")
    assert status == 400 and "sort by" in body["message"]
    status, body = await api("version")
    assert status == 400 and "ref" in body["message"]
    status, body = await api("models", repo="/nowhere/at/all")
    assert status == 404 and "%dlv init" in body["message"]


async def test_one_version_metadata_graph_and_histograms(api: Any, repo_dir: Path) -> None:
    status, meta = await api("version", ref="mlp:best")
    assert status == 200
    assert meta["ref"] == "mlp@2" and meta["tags"] == ["best"] and meta["metrics"] == {"acc": 0.6}
    assert meta["parameters"] == 8 * 16 + 16 + 16 * 4 + 4
    with mh.open(repo_dir, read_only=True) as repo:
        layers = repo.graph("mlp@2").graph.number_of_nodes()
        weights = repo.load("mlp@2")
    status, graph = await api("graph", ref="mlp@2")
    assert status == 200
    assert graph["title"] == "mlp@2" and len(graph["nodes"]) == layers
    status, hist = await api("histograms", ref="mlp@2", bins=8)
    assert status == 200 and hist["refs"] == ["mlp@2"]
    first = next(t for t in hist["tensors"] if t["name"] == "0.weight")
    assert sum(first["counts"][0]) == weights["0.weight"].size
    assert first["lo"] == float(np.min(weights["0.weight"]))
    status, two = await api("histograms", ref="mlp@1", other="mlp@2", bins=8)
    assert status == 200 and two["refs"] == ["mlp@1", "mlp@2"]


async def test_lineage_crosses_models(api: Any) -> None:
    status, lineage = await api("lineage", model="mlp-ft")
    assert status == 200
    refs = {n["ref"] for n in lineage["nodes"]}
    assert {"mlp-ft@1", "mlp@2", "mlp@1"} <= refs
    status, body = await api("lineage", model="mpl")
    assert status == 404 and "mlp" in body["message"]


async def test_a_commit_elsewhere_changes_the_state_and_the_listing(api: Any, repo_dir: Path) -> None:
    _, before = await api("state")
    _, still = await api("state")
    assert before == still
    with mh.open(repo_dir) as other:  # another process's view of the same folder
        other.commit({"w": np.ones(3, np.float32)}, name="cnn", message="second cnn")
    _, after = await api("state")
    assert after["state"] != before["state"]
    _, page = await api("versions", model="cnn")
    assert [r["ref"] for r in page["rows"]] == ["cnn@2", "cnn@1"]
    _, found = await api("versions", q="second")
    assert [r["ref"] for r in found["rows"]] == ["cnn@2"]


async def test_runs_in_progress_show(api: Any, repo_dir: Path) -> None:
    _, none = await api("runs")
    assert none["runs"] == []
    with mh.open(repo_dir) as repo, mh.run("cnn", params={"lr": 0.01}, repo=repo) as run:
        run.log(1, loss=0.9)
        run.log(2, loss=0.7)
        status, body = await api("runs")
        assert status == 200
        [live] = body["runs"]
        assert live["model"] == "cnn" and live["status"] == "running" and live["last_step"] == 2
        _, models = await api("models")
        assert {m["name"]: m["running"] for m in models["models"]}["cnn"] == 1
        run.stop()
    _, after = await api("runs")
    assert after["runs"] == []


async def test_repositories_opened_in_notebooks_and_added(api: Any, sample_repo: Path, tmp_path: Path) -> None:
    remember(str(sample_repo))
    _, body = await api("repositories")
    entries = {e["location"]: e for e in body["repositories"]}
    assert entries[str(sample_repo.resolve())]["source"] == "notebook"
    status, page = await api("versions", repo=str(sample_repo), model="mlp", limit=1)
    assert status == 200 and page["rows"][0]["ref"] == "mlp@3"

    other = tmp_path / "other"
    with mh.open(other) as repo:
        repo.commit({"w": np.zeros(2, np.float32)}, name="tiny")
    status, body = await api("models", repo=str(other))
    assert status == 404  # not offered until added
    status, entry = await api("repositories", method="POST", body={"location": str(other)})
    assert status == 200 and entry["source"] == "added"
    status, body = await api("models", repo=str(other))
    assert status == 200 and [m["name"] for m in body["models"]] == ["tiny"]
    status, body = await api("repositories", method="POST", body={"location": str(tmp_path / "missing")})
    assert status == 404 and "dlv init" in body["message"]


async def test_read_only_refuses_tag_and_delete(api: Any) -> None:
    status, body = await api("tag", method="POST", body={"ref": "mlp@1", "tag": "x"})
    assert status == 403 and "read_only=False" in body["message"]
    status, body = await api("version", method="DELETE", ref="mlp@1")
    assert status == 403
    _, page = await api("versions", model="mlp")
    assert page["total"] == 3 and page["rows"][2]["tags"] == []
