"""``dlv publish / pull / search / remote / card / import``: the sharing verbs from a terminal.

Registered into ``dlv``'s parser by :func:`add_commands`; same conventions as :mod:`nbmodelhub.cli`.
Each handler also leaves its value in ``args.result``, which the ``%dlv`` magic returns (a
``ModelCard`` renders as markdown in a notebook).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from typing import Any

import nbmodelhub as mh
from nbmodelhub import render
from nbmodelhub.cli import _json, _out, _parse_pairs, _plural
from nbmodelhub.errors import UsageError
from nbmodelhub.hub.cards import FIELDS
from nbmodelhub.hub.transfer import TransferReport

Command = Callable[[str, Any, "str | None", str], argparse.ArgumentParser]


def _card_fields(args: argparse.Namespace) -> dict[str, str]:
    return {f: getattr(args, f) for f in FIELDS if getattr(args, f, None) is not None}


def _add_card_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--description", metavar="TEXT", help="what the model is (the card's description)")
    p.add_argument("--intended-use", dest="intended_use", metavar="TEXT", help="what it is for, and not for")
    p.add_argument("--limitations", metavar="TEXT", help="known limitations and biases")
    p.add_argument("--license", metavar="NAME", help="license of the weights, as in mit or apache-2.0")


def _transfer_line(verb: str, asked: str, where: str, report: TransferReport) -> str:
    sent = f"{_plural(report.objects_sent, 'object')} sent ({render.human_bytes(report.bytes_sent)})"
    line = f"{verb} {asked} {where} as {report.ref}: {sent}, {report.objects_present} already there"
    new = [r for r in report.created if r != report.ref]
    if new:
        line += f"; ancestors too: {', '.join(new)}"
    return line


def cmd_publish(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    report = repo.publish(args.ref, hub=args.hub, as_name=args.as_name, card=_card_fields(args) or None)
    args.result = report
    if args.json:
        _json(report.to_dict())
        return 0
    _out(_transfer_line("published", args.ref, f"to {report.destination}", report))
    return 0


def cmd_pull(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    report = repo.pull(args.hub_ref, hub=args.hub, as_name=args.as_name)
    args.result = report
    if args.json:
        _json(report.to_dict())
        return 0
    _out(_transfer_line("pulled", args.hub_ref, f"from {report.source}", report))
    return 0


def cmd_search(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    text = shlex.join(args.terms) if len(args.terms) > 1 else "".join(args.terms)
    hits = repo.search(text, hub=args.hub, latest=args.latest)
    args.result = hits
    if args.json:
        _json([h.to_dict() if hasattr(h, "to_dict") else h for h in hits])
        return 0
    if not hits:
        _out("no versions match" + (f" {text!r}" if text else ""))
        return 0
    if not all(hasattr(h, "description") for h in hits):  # a DQL select returns its own rows
        for h in hits:
            _out(str(h))
        return 0
    rows = [
        [
            h.ref,
            h.version_id[:10],
            render.short_time(h.created),
            render.truncate((h.description or h.message).splitlines()[0] if (h.description or h.message) else "", 40),
            render.compact_kv(h.params, 32),
            render.compact_kv(h.metrics, 32),
            ", ".join(h.tags),
        ]
        for h in hits
    ]
    _out(render.table(["ref", "id", "created", "description", "params", "metrics", "tags"], rows))
    return 0


def cmd_remote(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    if args.action == "list":
        if args.name or args.url:
            raise UsageError("`dlv remote list` takes no arguments")
        known = repo.remotes()
        args.result = known
        if args.json:
            _json(known)
        elif not known:
            _out("no remotes: add one with `dlv remote add origin URL`")
        else:
            _out(render.table(["name", "url"], [[n, u] for n, u in sorted(known.items())]))
        return 0
    if not args.name:
        raise UsageError(f"`dlv remote {args.action}` needs a NAME")
    if args.action == "add":
        if not args.url:
            raise UsageError("`dlv remote add NAME URL` needs a URL (a folder, s3://bucket/prefix, https://…)")
        url = repo.add_remote(args.name, args.url, force=args.force)
        args.result = repo.remotes()
        _json({"name": args.name, "url": url}) if args.json else _out(f"remote {args.name} → {url}")
        return 0
    if args.url:
        raise UsageError("`dlv remote remove NAME` takes no URL")
    url = repo.remove_remote(args.name)
    args.result = repo.remotes()
    _json({"name": args.name, "url": url}) if args.json else _out(f"removed remote {args.name} ({url})")
    return 0


def cmd_card(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    fields = _card_fields(args)
    if fields:
        if args.hub:
            raise UsageError("set a hub's card by publishing: `dlv publish REF --hub HUB --description …`")
        repo.set_card(repo.get(args.ref).model, **fields)
    card = repo.card(args.ref, hub=args.hub)
    args.result = card
    if args.json:
        _json(card.to_dict())
    else:
        _out(card.to_markdown())
    return 0


def cmd_import(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    version = repo.import_model(
        args.source,
        args.name,
        message=args.message,
        params=_parse_pairs(args.params, "params"),
        metrics=_parse_pairs(args.metrics, "metrics"),
    )
    args.result = version
    if args.json:
        _json(version.to_dict())
        return 0
    graph = repo.graph(version).summary()
    kind = "traced layer graph" if graph.get("traced") else f"{graph.get('source', 'names')}-level layer graph"
    parts = [
        _plural(len(version.tensors), "tensor"),
        f"{render.human_count(version.parameter_count)} parameters",
        f"{kind} of {_plural(int(graph.get('layers', 0)), 'layer')}",
        f"{_plural(len(version.files), 'original file')} kept",
    ]
    _out(f"imported {args.source} as {version.ref} ({version.id[:10]}): {', '.join(parts)}")
    return 0


def add_commands(command: Command) -> None:
    hub_help = "a remote's name or a URL: folder, s3://, gs://, az://, https:// (default: origin)"
    p = command("publish", cmd_publish, "write", "copy a version (and its ancestors) to a hub")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--hub", metavar="HUB", help=hub_help)
    p.add_argument("--as", dest="as_name", metavar="NAME", help="the model's name on the hub")
    _add_card_options(p)

    p = command("pull", cmd_pull, "write", "copy a hub's version (and its ancestors) here, ids kept")
    p.add_argument("hub_ref", metavar="HUB_REF", help="a version on the hub: resnet@2, or origin/resnet:prod")
    p.add_argument("--hub", metavar="HUB", help=hub_help)
    p.add_argument("--as", dest="as_name", metavar="NAME", help="the model's name here")

    p = command("search", cmd_search, "read", "find versions by words, name, tags, params and metrics")
    p.add_argument("terms", nargs="*", metavar="TERM", help="words, name=GLOB, tag=T, lr<0.01, metrics.acc>=0.9")
    p.add_argument("--hub", metavar="HUB", help="search a hub (default: this repository)")
    p.add_argument("--latest", action="store_true", help="only each model's newest matching version")

    p = command("remote", cmd_remote, "write", "name hubs: remote add NAME URL | remote list | remote remove NAME")
    p.add_argument("action", choices=["add", "list", "remove"])
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("url", nargs="?", metavar="URL")
    p.add_argument("--force", action="store_true", help="add: repoint an existing remote")

    p = command("card", cmd_card, "write", "show a version's model card; with --description etc., edit it")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--hub", metavar="HUB", help="show the card of a version on a hub")
    _add_card_options(p)

    p = command(
        "import", cmd_import, "write", "commit a model from a Hugging Face folder, hf://, ONNX, safetensors, .pt"
    )
    p.add_argument("source", metavar="SOURCE", help="a folder, hf://org/name[@rev], https://…/file, or a weights file")
    p.add_argument("-n", "--name", required=True, help="model name")
    p.add_argument("-m", "--message", default=None, help="default: import SOURCE")
    p.add_argument("--params", nargs="+", action="extend", metavar="K=V", help="hyperparameters, values parsed as JSON")
    p.add_argument("--metrics", nargs="+", action="extend", metavar="K=V", help="final metrics")
