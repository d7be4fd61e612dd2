"""DQL select, slice and construct on real stored models: AlexNet-shaped CNNs and GPT-2 from a config."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import all_files, tiny_gpt2

import nbmodelhub as mh
from dql.models import alexnet
from nbmodelhub.dql import DQLSyntaxError
from nbmodelhub.errors import UsageError


@pytest.fixture
def cnns(repo):
    repo.commit(alexnet(0), name="alexnet_a", metrics={"acc": 0.95}, params={"lr": 0.1})
    repo.commit(alexnet(1, "avg"), name="alexnet_b", metrics={"acc": 0.85}, params={"lr": 0.01})
    repo.commit(alexnet(2), name="vgg16", metrics={"acc": 0.97}, params={"lr": 0.1})
    repo.commit(alexnet(3), name="alexnet_a", metrics={"acc": 0.5}, params={"lr": 0.5})
    return repo


def refs(result) -> list[str]:
    return [v.ref for v in result.versions]


def test_select_the_issue_query_mixes_metadata_metrics_and_structure(cnns):
    q = cnns.query(
        'select m where m.name like "alexnet_%" and m.created > "2025-11-22" and m.metrics.acc > 0.9 '
        'and m["conv[1,3,5]"].next has POOL("MAX")'
    )
    assert refs(q) == ["alexnet_a@1"]
    assert q.kind == "select" and isinstance(q.versions[0], mh.Version)


def test_select_structure_tells_pool_kinds_apart(cnns):
    assert refs(cnns.query('select m where m["conv*"].next has POOL("AVG")')) == ["alexnet_b@1"]
    assert refs(cnns.query('select m where m["conv2"].next has POOL("MAX") and m.latest = true')) == [
        "vgg16@1", "alexnet_a@2"]  # fmt: skip
    assert refs(cnns.query('select m where m["conv1"].next.next has RELU and m.name = "vgg16"')) == ["vgg16@1"]
    assert refs(cnns.query('select m where m["fc"].prev has POOL and m["conv*"] has CONV(kernel_size=3)')) == refs(
        cnns.query("select m"))
    assert refs(cnns.query('select m where m["conv9"] has CONV')) == []


def test_select_params_order_limit_not_in(cnns):
    assert refs(cnns.query("select m where m.params.lr = 0.1 order by m.metrics.acc desc")) == [
        "vgg16@1", "alexnet_a@1"]  # fmt: skip
    assert refs(cnns.query("select m order by m.metrics.acc limit 2")) == ["alexnet_a@2", "alexnet_b@1"]
    assert refs(cnns.query('select m where not m.name in ["vgg16", "alexnet_a"]')) == ["alexnet_b@1"]
    assert refs(cnns.query('select m where m.name not like "alex%" or m.number = 2')) == ["vgg16@1", "alexnet_a@2"]
    assert refs(cnns.query('select m where m.created < "2000-01-01"')) == []
    assert refs(cnns.query("select m where m.metrics.missing > 0")) == []


def test_select_sees_tags_deletes_and_other_writers(cnns, repo_path):
    cnns.tag("alexnet_a@1", "best")
    other = mh.open(repo_path)
    assert refs(other.query('select m where "best" in m.tags')) == ["alexnet_a@1"]
    assert refs(other.query('select m where "best" not in m.tags and m.name = "alexnet_a"')) == ["alexnet_a@2"]
    other.commit(alexnet(4), name="late", metrics={"acc": 0.99})
    other.delete("vgg16@1")
    assert refs(cnns.query("select m where m.metrics.acc > 0.96")) == ["late@1"]
    assert [m for m in cnns.models()] == ["alexnet_a", "alexnet_b", "late"]


def test_select_on_gpt2_structure(repo):
    repo.commit(tiny_gpt2(), name="gpt2", metrics={"loss": 3.2})
    assert refs(repo.query('select m where m["transformer.h.*.attn.c_attn"].next has ATTENTION')) == ["gpt2@1"]
    assert refs(repo.query('select m where m["transformer.h.[0,1].mlp.act"] has GELU')) == ["gpt2@1"]
    assert refs(repo.query('select m where m["transformer.h.*.mlp.act"] has RELU')) == []
    assert refs(repo.query('select m where m["transformer.h.1.ln_*"] has NORM("LAYER")')) == ["gpt2@1"]
    assert refs(repo.query('select m where m["**.c_fc"] has Conv1D(nf=128)')) == ["gpt2@1"]


def test_slice_cnn_gives_a_runnable_module_with_the_stored_weights(cnns):
    q = cnns.query(
        'slice m2 from m1 where m1.name = "vgg16" mutate m2.input = m1["conv2"] and m2.output = m1["fc"]'
    )
    (d,) = q.models
    assert d.graph.layers() == ["conv2", "pool2", "conv3", "relu3", "pool3", "fc"]
    assert sorted(d.weights) == ["conv2.bias", "conv2.weight", "conv3.bias", "conv3.weight", "fc.bias", "fc.weight"]
    src = alexnet(2)
    x = torch.randn(2, 8, 8, 8)
    expected = src.fc(torch.flatten(src.pool3(src.relu3(src.conv3(src.pool2(src.conv2(x))))), 1))
    assert torch.equal(d.module(x), expected)
    v = d.commit(cnns, name="vgg16-tail")
    assert v.parent_refs == ("vgg16@1",)
    assert cnns.graph(v).layers() == d.graph.layers()
    assert cnns.load(v)["fc.weight"].tolist() == src.fc.weight.detach().numpy().tolist()


def test_slice_gpt2_mlp_matches_the_original_block(repo):
    model = tiny_gpt2()
    repo.commit(model, name="gpt2")
    q = repo.query(
        'slice m2 from m1 where m1.name = "gpt2" '
        'mutate m2.input = m1["transformer.h.1.ln_2"] and m2.output = m1["transformer.h.1.mlp.dropout"]'
    )
    module = q.models[0].module.eval()
    x = torch.randn(1, 4, 32)
    block = model.transformer.h[1]
    assert torch.equal(module(x), block.mlp(block.ln_2(x)))


def test_slice_errors_say_what_to_do(cnns, repo):
    model = tiny_gpt2()
    repo.commit(model, name="gpt2")
    with pytest.raises(UsageError, match="no data flows"):
        cnns.query('slice a from b where b.name = "vgg16" mutate a.input = b["fc"] and a.output = b["conv1"]')
    with pytest.raises(UsageError, match=r"must name one layer.*matches 3"):
        cnns.query('slice a from b where b.name = "vgg16" mutate a.input = b["conv*"] and a.output = b["fc"]')
    with pytest.raises(UsageError, match="outside it"):
        repo.query('slice a from b where b.name = "gpt2" '
                   'mutate a.input = b["transformer.h.0.ln_2"] and a.output = b["transformer.h.1.ln_1"]')
    text = ('slice a from b where b.name = "gpt2" '
            'mutate a.input = b["transformer.h.0.ln_1"] and a.output = b["transformer.h.0.attn.c_proj"]')
    d = repo.query(text).models[0]
    with pytest.raises(UsageError, match="scaled_dot_product_attention"):
        _ = d.module


def test_construct_cnn_inserts_relu_where_an_avg_pool_follows(cnns):
    before = refs(cnns.query("select m"))
    q = cnns.query(
        'construct m2 from m1 where m1.name like "alexnet%" and m1["conv*($1)"].next has POOL("AVG") '
        'mutate m1["conv*($1)"].insert = RELU("relu$1")'
    )
    (d,) = q.models  # alexnet_a has no avg pool; alexnet_b's conv2 has
    assert d.source.ref == "alexnet_b@1"
    assert d.graph.layers()[3:6] == ["conv2", "relu2", "pool2"]
    assert refs(cnns.query("select m")) == before  # nothing is committed by a query
    src = alexnet(1, "avg")
    x = torch.randn(2, 3, 16, 16)
    h = src.pool2(torch.relu(src.conv2(src.relu1(src.pool1(src.conv1(x))))))
    expected = src.fc(torch.flatten(src.pool3(src.relu3(src.conv3(h))), 1))
    assert torch.allclose(d.module(x), expected)
    v = d.commit(cnns, name="alexnet_relu")
    assert refs(cnns.query('select m where m["conv2"].next has RELU')) == [v.ref]


def test_construct_gpt2_applies_to_your_module(repo):
    model = tiny_gpt2()
    repo.commit(model, name="gpt2")
    (d,) = repo.query(
        'construct m2 from m1 where m1.name = "gpt2" and m1["transformer.h.*($1).mlp.act"] has GELU '
        'mutate m1["transformer.h.*($1).mlp.act"].insert = RELU("relu$1")'
    ).models
    assert {"transformer.h.0.mlp.relu0", "transformer.h.1.mlp.relu1"} <= set(d.graph.layers())
    with pytest.raises(UsageError, match="2 inputs"):
        _ = d.module  # embeddings of tokens and positions: the graph alone cannot rebuild GPT-2
    built = d.apply(tiny_gpt2(seed=7)).eval()
    x = torch.randn(1, 4, 32)
    mlp = built.transformer.h[0].mlp
    assert torch.equal(mlp(x), mlp.dropout(mlp.c_proj(torch.relu(mlp.act(mlp.c_fc(x))))))
    assert torch.equal(built.transformer.wte.weight, model.transformer.wte.weight)  # the source's weights
    v = d.commit(repo, name="gpt2-relu")
    assert repo.graph(v).summary()["by_type"]["ReLU"] == 2


def test_syntax_errors_point_with_a_caret(cnns, repo_path):
    before = all_files(repo_path)
    with pytest.raises(DQLSyntaxError) as err:
        cnns.query('select m where m.name like "x" and\n  m.metrics.acc >> 3')
    text = str(err.value)
    assert text.startswith("DQL syntax error at line 2, column 18")
    assert text.splitlines()[-1] == " " * 19 + "^"  # two spaces of indent, then the column
    with pytest.raises(DQLSyntaxError, match="expected one of 'construct', 'evaluate', 'select', 'slice'"):
        cnns.query("selec m")
    with pytest.raises(DQLSyntaxError, match="ends too early"):
        cnns.query("select m where m.name like")
    with pytest.raises(DQLSyntaxError, match="unknown name 'x'"):
        cnns.query("select m where x.name = 1")
    with pytest.raises(UsageError, match="has no field 'nme'"):
        cnns.query('select m where m.nme = "x"')
    with pytest.raises(UsageError, match="unknown kind"):
        cnns.query('select m where m["conv1"].next has POOL("MIN")')
    with pytest.raises(UsageError, match="not a date"):
        cnns.query('select m where m.created > "yesterday"')
    assert all_files(repo_path).keys() - before.keys() <= {"catalog/index.json.zst"}


def test_query_result_to_dict_is_json(cnns):
    q = cnns.query("select m where m.metrics.acc > 0.9")
    doc = json.loads(json.dumps(q.to_dict()))
    assert doc["kind"] == "select" and [v["ref"] for v in doc["versions"]] == ["alexnet_a@1", "vgg16@1"]
    d = cnns.query('construct b from a where a.name = "vgg16" mutate a["relu3"].delete = true')
    assert json.loads(json.dumps(d.to_dict()))["models"][0]["changes"] == ["delete relu3"]
    assert "relu3" not in d.models[0].graph.layers()
