"""A hub on object storage: publish, search and pull against an S3-protocol server on loopback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import assert_state_equal, pythonpath_env, small_mlp

import nbmodelhub as mh
from nbmodelhub.cli import main
from nbmodelhub.errors import ReadOnlyRepository
from nbmodelhub.store import backend as backend_module

from .conftest import S3Server, bucket_objects, use_credentials


def weights(seed: int, n: int = 6, shape: tuple[int, int] = (128, 256)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"block{i}.weight": rng.standard_normal(shape).astype(np.float32) for i in range(n)}


def test_publish_search_and_pull_keep_ids_lineage_and_bits(s3_hub, tmp_path):
    local = mh.open(tmp_path / "a")
    model = small_mlp(0)
    base = local.commit(model, name="mlp", message="base run", params={"lr": 0.1}, metrics={"acc": 0.71})
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    tuned = local.commit(model, name="mlp", message="lower lr", params={"lr": 0.01}, metrics={"acc": 0.83})
    local.add_remote("origin", s3_hub)

    report = local.publish("mlp", card={"description": "A small MLP for smoke tests", "intended_use": "tests"})
    assert report.created == ["mlp@1", "mlp@2"] and report.ref == "mlp@2"
    assert report.objects_sent > 0 and report.objects_present == 0

    hub = mh.open(s3_hub, read_only=True)
    assert [v.id for v in hub.versions("mlp")] == [base.id, tuned.id]
    assert hub.get("mlp@2").parents == (base.id,)
    assert hub.fsck().ok

    assert [c.ref for c in local.search("lr<0.05", hub="origin")] == ["mlp@2"]
    assert [c.ref for c in local.search("smoke acc>=0.7", hub="origin")] == ["mlp@2", "mlp@1"]
    assert local.search("acc>0.9", hub=s3_hub) == []
    assert local.search("name=mlp", hub="origin", latest=True)[0].description == "A small MLP for smoke tests"

    other = mh.open(tmp_path / "b")
    other.add_remote("origin", s3_hub)
    pulled = other.pull("origin/mlp@2", as_name="base")
    assert pulled.created == ["base@1", "base@2"]
    assert other.get("base@2").id == tuned.id and other.get("base@2").parents == (base.id,)
    assert_state_equal(local.load("mlp@2", framework="torch"), other.load("base@2", framework="torch"))
    assert other.card("base@2").intended_use == "tests"

    # Lineage survives the trip: a local fine-tune of the pulled base diffs against it.
    ft = small_mlp(0)
    other.checkout("base@2", ft)
    with torch.no_grad():
        ft[2].weight.add_(1.0)
    other.commit(ft, name="ft", parents=["base@2"], message="fine-tune")
    diff = other.diff("base@2", "ft@1")
    assert [c["name"] for c in diff.changed] == ["2.weight"]
    assert diff.unchanged == 3 and not diff.added and not diff.removed
    assert other.card("ft@1").lineage == ["base@2", "base@1"]

    # ... and when the fine-tune is published, the hub knows its base by the same id.
    back = other.publish("ft@1", hub="origin")
    assert back.created == ["ft@1"] and back.existing == ["mlp@1", "mlp@2"]
    assert mh.open(s3_hub).get("ft@1").parents == (tuned.id,)


def test_second_publish_of_a_version_differing_in_one_tensor_uploads_only_that_tensor(
    s3_server, s3_hub, bucket, tmp_path
):
    local = mh.open(tmp_path / "a")
    w = weights(1)
    local.commit(w, name="net")
    first = local.publish("net", hub=s3_hub)
    full = sum(bucket_objects(s3_server, bucket).values())
    w["block3.weight"] = w["block3.weight"] + np.float32(0.001)
    v2 = local.commit(w, name="net")
    before = bucket_objects(s3_server, bucket)
    second = local.publish("net", hub=s3_hub)
    after = bucket_objects(s3_server, bucket)

    new_keys = set(after) - set(before)
    changed_digest = v2.tensors["block3.weight"].hash
    tensor_keys = {k for k in new_keys if "/objects/tensors/" in k}
    assert {k.split("/")[3] for k in tensor_keys} == {changed_digest}
    stored = sum((tmp_path / "a" / k.split("/", 1)[1]).stat().st_size for k in tensor_keys)
    uploaded = sum(after[k] for k in new_keys)
    assert stored == sum(after[k] for k in tensor_keys)  # the one tensor's object, byte for byte
    assert uploaded - stored < 8_000  # plus the version record, graph and refs: a few kB
    assert second.bytes_sent < full / 4 < first.bytes_sent
    # The changed tensor and the new version record; the layer graph (same shapes) was there already.
    assert second.objects_sent == 2 and second.created == ["net@2"] and second.existing == ["net@1"]


def test_publish_interrupted_midway_resumes_and_sends_only_what_is_missing(s3_hub, tmp_path, monkeypatch):
    local = mh.open(tmp_path / "a")
    w = weights(2, n=10)
    local.commit(w, name="net")
    real_set = backend_module.Backend.set
    completed = []

    def dropping_set(self, key, value):
        # The connection drops after three tensor objects arrived, while a fourth has chunks but no metadata.
        if key.startswith("objects/tensors/") and key.endswith("/zarr.json") and self.location.startswith("s3://"):
            if len(completed) == 3:
                raise ConnectionResetError("connection reset by peer")
            completed.append(key)
        return real_set(self, key, value)

    monkeypatch.setattr(backend_module.Backend, "set", dropping_set)
    with pytest.raises(ConnectionResetError):
        local.publish("net", hub=s3_hub)
    hub = mh.open(s3_hub, read_only=True)
    assert hub.versions() == []  # nothing visible: refs come last
    monkeypatch.setattr(backend_module.Backend, "set", real_set)

    resumed = local.publish("net", hub=s3_hub)
    # The three tensors that arrived are skipped (and the graph too, if a parallel worker sent it before
    # the drop); everything else is sent: the other tensors, the version record, and the graph if needed.
    assert resumed.objects_present in (3, 4)
    assert resumed.objects_present + resumed.objects_sent == len(w) + 2
    hub = mh.open(s3_hub, read_only=True)
    assert_state_equal(w, hub.load("net"))
    assert hub.fsck().ok


PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import nbmodelhub as mh
    seed, local, hub, start = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    repo = mh.open(local)
    rng = np.random.default_rng(seed)
    repo.commit({"w": rng.standard_normal((64, 64)).astype(np.float32)}, name="shared", message=f"from {seed}")
    time.sleep(max(0.0, start - time.time()))
    print(repo.publish("shared@1", hub=hub).ref)
    """
)


@pytest.mark.slow
def test_four_concurrent_publishers_to_one_new_hub_lose_nothing(s3_server: S3Server, s3_hub, tmp_path):
    import time

    env = {**pythonpath_env(), **s3_server.env("writer"), "TQDM_DISABLE": "1"}
    start = time.time() + 6  # every process has imported and committed by then; they publish together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(i), str(tmp_path / f"r{i}"), s3_hub, str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    refs = sorted(o[0].strip() for o in outs)
    assert refs == ["shared@1", "shared@2", "shared@3", "shared@4"]
    hub = mh.open(s3_hub, read_only=True)
    messages = sorted(v.message for v in hub.versions("shared"))
    assert messages == [f"from {i}" for i in range(4)]
    assert hub.fsck().ok


def test_read_only_credentials_are_refused_with_one_clear_line(
    s3_server, s3_hub, bucket, tmp_path, monkeypatch, capsys
):
    local = mh.open(tmp_path / "a")
    local.commit(weights(3, n=2), name="net")
    local.publish("net", hub=s3_hub)
    before = bucket_objects(s3_server, bucket)
    local.commit(weights(4, n=2), name="net")

    use_credentials(monkeypatch, s3_server, "reader")
    with pytest.raises(ReadOnlyRepository) as info:
        local.publish("net", hub=s3_hub)
    message = str(info.value)
    assert message.startswith("this hub is read-only for you:")
    key, secret = s3_server.reader
    assert key not in message and secret not in message
    assert bucket_objects(s3_server, bucket) == before  # nothing written, nothing lost

    # Reading still works with the read-only credential.
    assert [c.ref for c in local.search("", hub=s3_hub)] == ["net@1"]
    code = main(["--repo", str(tmp_path / "a"), "publish", "net", "--hub", s3_hub])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "read-only for you" in err
    assert key not in err and secret not in err and "Traceback" not in err


def test_wrong_credentials_say_so_without_echoing_them(s3_server, s3_hub, tmp_path, monkeypatch, capsys):
    mh.open(tmp_path / "a").commit(weights(5, n=1), name="net")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-but-still-secret")
    code = main(["--repo", str(tmp_path / "a"), "search", "--hub", s3_hub])
    err = capsys.readouterr().err
    assert code == 1 and "refused access" in err and err.count("\n") == 1
    assert "AKIANOTAREALKEY00000" not in err and "not-a-real-secret" not in err


def test_unreachable_storage_is_one_line_naming_the_url(tmp_path, monkeypatch, capsys):
    from .conftest import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNREACHABLE00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unreachable-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    mh.open(tmp_path / "a").commit(weights(6, n=1), name="net")
    assert main(["--repo", str(tmp_path / "a"), "publish", "net", "--hub", "s3://nowhere/hub"]) == 1
    err = capsys.readouterr().err
    expected = "the storage at s3://nowhere/hub failed a request (connection refused): check the URL and retry"
    assert err == f"dlv: error: {expected}\n"
