"""Tag and delete from the sidebar, when the server allows changes (``ModelHubServer.read_only = False``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import nbmodelhub as mh


@pytest.fixture
def sidebar_settings() -> dict[str, Any]:
    return {"read_only": False}


async def test_tag_moves_only_with_force(api: Any, repo_dir: Path) -> None:
    status, version = await api("tag", method="POST", body={"ref": "mlp@3", "tag": "release"})
    assert status == 200 and version["ref"] == "mlp@3" and version["tags"] == ["release"]
    with mh.open(repo_dir, read_only=True) as repo:
        assert repo.get("mlp:release").number == 3
    status, body = await api("tag", method="POST", body={"ref": "mlp@1", "tag": "best"})
    assert status == 400 and "--force" in body["message"]
    _, models = await api("models")
    assert {m["name"]: m["tags"] for m in models["models"]}["mlp"] == {"best": 2, "release": 3}
    status, _ = await api("tag", method="POST", body={"ref": "mlp@1", "tag": "best", "force": True})
    assert status == 200
    with mh.open(repo_dir, read_only=True) as repo:
        assert repo.get("mlp:best").number == 1
    status, body = await api("tag", method="POST", body={"ref": "mlp@1", "tag": "bad tag!"})
    assert status == 400
    status, body = await api("tag", method="POST", body={"tag": "x"})
    assert status == 400 and "ref" in body["message"]


async def test_delete_hides_a_version(api: Any, repo_dir: Path) -> None:
    _, before = await api("state")
    status, gone = await api("version", method="DELETE", ref="mlp@2")
    assert status == 200 and gone["ref"] == "mlp@2"
    _, after = await api("state")
    assert after != before
    status, body = await api("version", ref="mlp@2")
    assert status == 404 and "deleted" in body["message"]
    _, page = await api("versions", model="mlp")
    assert [r["ref"] for r in page["rows"]] == ["mlp@3", "mlp@1"]
    with mh.open(repo_dir, read_only=True) as repo:
        assert [v.ref for v in repo.versions("mlp")] == ["mlp@1", "mlp@3"]
    status, body = await api("version", method="DELETE", ref="mlp@9")
    assert status == 404


async def test_changes_need_a_token_or_the_xsrf_cookie(http_server_client: Any, jp_base_url: str) -> None:
    # A cross-site form post carries neither the token nor the XSRF header: refused, nothing changes.
    response = await http_server_client.fetch(
        jp_base_url + "nbmodelhub/version?ref=mlp@1", method="DELETE", raise_error=False
    )
    assert response.code == 403
    response = await http_server_client.fetch(
        jp_base_url + "nbmodelhub/tag", method="POST", body='{"ref": "mlp@1", "tag": "x"}',
        headers={"Cookie": "_xsrf=abc"}, raise_error=False,
    )
    assert response.code == 403
