"""``dlv``: the version-control verbs from a terminal. Parse, call :mod:`nbmodelhub.api`, print.

Every command that shows something takes ``--json`` and then prints one JSON document on stdout
(progress bars, if any, go to stderr). A failure the user can act on prints one line
``dlv: error: …`` on stderr and exits with the error's code (2 for a malformed request, 1
otherwise); anything else is a bug and says how to get its traceback (``--debug``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbmodelhub as mh
from nbmodelhub import render
from nbmodelhub.errors import ModelHubError, UsageError
from nbmodelhub.store.archive import DEFAULT_MAX_CHAIN

PROG = "dlv"

# A handler prints its output and returns the exit code. The `%dlv` magic calls the same handlers with
# two extra attributes on ``args``: ``namespace`` (the notebook's variables, where commands look up
# objects by name) and ``result``, where a handler leaves the value the magic returns (a Version, ...).
Handler = Callable[[argparse.Namespace, "mh.Repository | None"], int | None]


def _namespace(args: argparse.Namespace) -> dict[str, Any] | None:
    return getattr(args, "namespace", None)


def _from_namespace(args: argparse.Namespace, name: str) -> Any:
    """The notebook variable ``name`` when the magic runs the command and such a variable exists, else None."""
    namespace = _namespace(args)
    if namespace is None or not name.isidentifier():
        return None
    return namespace.get(name)


# -- output helpers ------------------------------------------------------------------------------


def _out(text: str = "") -> None:
    print(text, file=sys.stdout)


def _json(value: Any) -> None:
    print(json.dumps(render.jsonable(value), indent=2, ensure_ascii=False, allow_nan=False), file=sys.stdout)


def _parse_value(text: str, non_finite: bool) -> Any:
    """``1e-4`` → 0.0001, ``true`` → True, ``[1,2]`` → a list; anything else stays a string.

    ``NaN``/``Infinity`` are numbers only where they make sense (metrics: a diverged loss);
    as a param they stay the string the user typed.
    """

    def constant(name: str) -> Any:
        if non_finite:
            return float(name.lower().replace("infinity", "inf"))
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=constant)
    except ValueError:
        return text


def _parse_pairs(
    items: Sequence[str] | None, what: str, namespace: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """``lr=1e-4 bs=32`` → a dict; in a notebook a bare name is a dict variable merged in (``--params config``)."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep and namespace is not None and isinstance(namespace.get(item), Mapping):
            out.update(namespace[item])
            continue
        if not sep or not key.strip():
            also = " or the name of a dict in this notebook" if namespace is not None else ""
            raise UsageError(f"--{what} takes key=value pairs (as in --{what} lr=1e-4 bs=32){also}, got {item!r}")
        out[key.strip()] = _parse_value(value, non_finite=what == "metrics")
    return out


def _tags(version: mh.Version) -> str:
    return ", ".join(version.tags)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


# -- commands --------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, _: mh.Repository | None) -> int:
    location = args.location or args.repo
    existed = _holds_repository(location)
    repo = mh.open(location)
    try:
        versions = repo.versions()
        where = _display_location(repo.location)
        if args.json:
            models = len(repo.models())
            _json({"location": where, "created": existed is False, "models": models, "versions": len(versions)})
            return 0
        if existed is False:
            _out(f"initialized an empty nbmodelhub repository at {where}")
        else:
            summary = f"{_plural(len(repo.models()), 'model')}, {_plural(len(versions), 'version')}"
            _out(f"repository at {where} ({summary})")
        if location is not None and os.environ.get("MODELHUB_PATH") != location and _namespace(args) is None:
            _out(f"use it with `dlv --repo {where} …` or `export MODELHUB_PATH={where}`")
    finally:
        repo.close()
    return 0


def _holds_repository(location: str | None) -> bool | None:
    """Whether a local repository exists before we open it; None when we cannot tell (URLs)."""
    text = location if location is not None else os.environ.get("MODELHUB_PATH") or str(Path.home() / ".modelhub")
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        return None
    return (Path(text).expanduser() / "zarr.json").is_file()


def _display_location(location: str) -> str:
    if "://" in location:
        return location
    return str(Path(location).expanduser().resolve())


def cmd_commit(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    source: Any = _from_namespace(args, args.source)
    if source is None:
        path = Path(args.source).expanduser()
        if not path.exists():
            where = "a variable of this notebook or " if _namespace(args) is not None else ""
            raise UsageError(f"no such file: {path} (commit {where}a .safetensors or .pt file)")
        source = str(path)
    version = repo.commit(
        source,
        name=args.name,
        message=args.message,
        params=_parse_pairs(args.params, "params", _namespace(args)),
        metrics=_parse_pairs(args.metrics, "metrics", _namespace(args)),
        files=args.files or None,
        parents=args.parent or None,
        step=args.step,
        author=args.author,
    )
    args.result = version
    new, against = _new_tensors(repo, version)
    if args.json:
        _json({**version.to_dict(), "new_tensors": new})
        return 0
    if against:
        news = f"{_plural(new, 'new tensor')} vs {', '.join(against)}"
    else:
        news = "first version" if not version.parents else f"{_plural(new, 'new tensor')}"
    parts = [
        _plural(len(version.tensors), "tensor"),
        f"{render.human_count(version.parameter_count)} parameters",
        render.human_bytes(version.nbytes),
        news,
    ]
    if version.files:
        parts.append(_plural(len(version.files), "file"))
    _out(f"committed {version.ref} ({version.id[:10]}) {', '.join(parts)}")
    return 0


def _new_tensors(repo: mh.Repository, version: mh.Version) -> tuple[int, list[str]]:
    """Distinct tensor contents this version does not share with its parents."""
    seen: set[str] = set()
    against: list[str] = []
    for ref in version.parent_refs:
        try:
            parent = repo.get(ref)
        except ModelHubError:
            continue
        seen |= {t.hash for t in parent.tensors.values()}
        against.append(parent.ref)
    return len({t.hash for t in version.tensors.values()} - seen), against


def cmd_list(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    versions = repo.versions(model=args.model, message=args.message, last=args.last)
    evaluated = {v.id: repo.evaluations(v) for v in versions}
    if args.json:
        _json([{**v.to_dict(), "evaluations": [e.to_dict() for e in evaluated[v.id]]} for v in versions])
        return 0
    if not versions:
        _out("no versions" + (f" of {args.model}" if args.model else "") + (" match" if args.message else ""))
        return 0
    rows = [
        [
            v.ref,
            v.id[:10],
            render.short_time(v.created),
            v.author,
            render.truncate(v.message, 40),
            render.compact_kv(v.params, 40),
            render.compact_kv(v.metrics, 32),
            *([_latest_evaluation(evaluated[v.id])] if any(evaluated.values()) else []),
            _tags(v),
        ]
        for v in versions
    ]
    columns = ["ref", "id", "created", "author", "message", "params", "metrics", "tags"]
    if any(evaluated.values()):
        columns.insert(-1, "evaluated")
    _out(render.table(columns, rows))
    return 0


def _latest_evaluation(evaluations: list[Any]) -> str:
    """The latest value of each evaluated metric (evaluations come oldest first)."""
    latest: dict[str, Any] = {}
    for e in evaluations:
        latest.update(e.metrics)
    return render.compact_kv(latest, 32) or "-"


def cmd_log(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    versions = repo.log(args.name)
    if args.json:
        _json([v.to_dict() for v in versions])
        return 0
    rows = []
    foreign = False
    for v in versions:
        own = v.model == args.name
        foreign |= not own
        ref = v.ref + (f" ({_tags(v)})" if v.tags else "")
        parents = ", ".join(v.parent_refs) if v.parent_refs else "-"
        rows.append(
            [
                "*" if own else "o",
                ref,
                v.id[:10],
                render.short_time(v.created),
                v.author,
                parents,
                render.truncate(v.message, 50),
            ]
        )
    _out(render.table(["", "version", "id", "created", "author", "parents", "message"], rows))
    if foreign:
        _out(f"\n* = {args.name}, o = an ancestor in another model")
    return 0


def cmd_desc(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    info = repo.describe(args.ref, bins=args.bins, snapshot=args.snapshot, stats=not args.no_stats)
    if args.json:
        _json(info)
        return 0
    v = info["version"]
    header: list[list[str]] = [
        ["version", v["ref"] + (f"  [{', '.join(v['tags'])}]" if v["tags"] else "")],
        ["id", v["id"]],
        ["author", v["author"]],
        ["created", render.short_time(v["created"])],
        ["message", v["message"] or "-"],
        ["parents", ", ".join(v["parents"]) or "-"],
        ["framework", v["framework"] + (f" (from {v['source']})" if v.get("source") else "")],
        ["params", render.compact_kv(v["params"]) or "-"],
        ["metrics", render.compact_kv(info["metrics"]) or "-"],
    ]
    if info.get("curves"):
        curves = [f"{k} ({_plural(len(c), 'point')})" for k, c in info["curves"].items()]
        header.append(["curves", ", ".join(curves)])
    steps = v["snapshots"]
    if len(steps) == 1 and steps[0] is None:
        header.append(["snapshots", "1"])
    else:
        header.append(["snapshots", f"{len(steps)} at steps {', '.join('-' if s is None else str(s) for s in steps)}"])
    files = info["files"]
    shown = ", ".join(f"{f['name']} ({render.human_bytes(f['size'])})" for f in files[:5])
    more = f", … and {len(files) - 5} more (dlv files {v['ref']})" if len(files) > 5 else ""
    header.append(["files", f"{len(files)}: {shown}{more}" if files else "0"])
    ties = info["ties"]
    header.append(["ties", ", ".join(f"{a} = {b}" for a, b in ties.items()) if ties else "-"])
    graph = info.get("graph")
    if graph:
        flow = "data flow traced" if graph["traced"] else "hierarchy only, no data flow"
        header.append(["graph", f"{graph['layers']} layers, {graph['edges']} edges ({graph['source']}: {flow})"])
    for e in info.get("evaluations", []):
        header.append(
            ["evaluation", f"{render.compact_kv(e['metrics'])}  ({e['function']}, {render.short_time(e['created'])})"]
        )
    _out(render.table([], header))
    _out()
    stats = not args.no_stats
    rows = []
    for layer in info["layers"]:
        tensors = ", ".join(f"{n} {render.shape_text(t['dtype'], t['shape'])}" for n, t in layer["tensors"].items())
        row = [layer["layer"], render.human_count(layer["parameters"]), layer.get("type") or "-"]
        if stats:
            st = layer["stats"]
            row += [
                _stat(st["mean"]),
                _stat(st["std"]),
                _stat(st["min"]),
                _stat(st["max"]),
                render.percent(st["sparsity"]),
            ]
        rows.append([*row, tensors])
    n_tensors = sum(len(layer["tensors"]) for layer in info["layers"])
    total = [f"total ({_plural(len(info['layers']), 'layer')})", render.human_count(info["parameters"]), ""]
    size = f"{_plural(n_tensors, 'tensor')}, {render.human_bytes(info['bytes'])}"
    rows.append([*total, *([""] * 5 if stats else []), size])
    columns = ["layer", "parameters", "type", *(["mean", "std", "min", "max", "zeros"] if stats else []), "tensors"]
    _out(render.table(columns, rows, align="lrl" + ("rrrrr" if stats else "")))
    return 0


def _stat(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def cmd_diff(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    d = repo.diff(args.a, args.b, all_params=args.all_params, snapshot_a=args.snapshot_a, snapshot_b=args.snapshot_b)
    # A change from an all-zero tensor has no relative size (None): it sorts first, as the biggest.
    d.changed = sorted(d.changed, key=lambda c: -math.inf if c["relative"] is None else -c["relative"])
    if args.json:
        _json(d.to_dict())
        return 0
    a = d.a + (f" (step {d.step_a})" if d.step_a is not None else "")
    b = d.b + (f" (step {d.step_b})" if d.step_b is not None else "")
    _out(f"diff {a} → {b}")
    _out()
    arch = d.architecture
    if arch.get("identical", True):
        _out("architecture: identical")
    else:
        _out("architecture:" + (" same structure, layers renamed" if arch["structurally_equal"] else ""))
        for key in ("added", "removed"):
            groups = arch[f"groups_{key}"]
            outer = [g for g in groups if not any(g.startswith(o + ".") for o in groups if o != g)]
            if outer:
                _out(f"  blocks {key}: {', '.join(outer)}")
            if arch[key]:
                _out(f"  layers {key} ({len(arch[key])}): {render.truncate(', '.join(arch[key]), 200)}")
        for c in arch["changed"]:
            name = c["a"] if c["a"] == c["b"] else f"{c['a']} → {c['b']}"
            _out(f"  layer changed: {name} ({', '.join(c['what'])})")
        if arch["renamed"]:
            _out(f"  layers renamed: {len(arch['renamed'])} (e.g. {arch['renamed'][0][0]} → {arch['renamed'][0][1]})")
    if d.changed:
        _out(f"changed tensors ({len(d.changed)}), largest relative change first:")
        rows = [
            [
                c["name"] + (f" (was {c['a_name']})" if "a_name" in c else ""),
                f"{c['l2']:.4g}",
                f"{c['max_abs']:.3g}",
                "-" if c["cosine"] is None else f"{c['cosine']:.4f}",
                render.percent(c["fraction_changed"]),
                render.percent(c["relative"]),
            ]
            for c in d.changed
        ]
        columns = ["tensor", "L2 of change", "max |change|", "cosine", "elements changed", "relative"]
        _out(render.table(columns, rows, align="lrrrrr", indent=2))
    else:
        _out("changed tensors: none")
    for key, title in (("added", "added"), ("removed", "removed")):
        if d[key]:
            _out(f"{title} ({len(d[key])}): {', '.join(d[key])}")
    if d["reshaped"]:
        _out(f"reshaped ({len(d['reshaped'])}):")
        rows = [[r["name"], render.shape_text(*r["from"]), "→", render.shape_text(*r["to"])] for r in d["reshaped"]]
        _out(render.table([], rows, indent=2))
    renamed_same = len(d.renamed) - sum(1 for c in d.changed if "a_name" in c)
    moved = f" ({renamed_same} under new names)" if renamed_same else ""
    _out(f"unchanged: {_plural(d['unchanged'], 'tensor')}{moved}")
    if d["params"]:
        _out()
        _out("params:")
        rows = [
            [k, render.format_value(p["from"]), "→", render.format_value(p["to"])]
            + (["" if p["from"] != p["to"] else "(same)"] if args.all_params else [])
            for k, p in d["params"].items()
        ]
        _out(render.table([], rows, indent=2))
    elif not args.all_params:
        _out("params: no changes")
    if d["metrics"]:
        _out()
        rows = []
        for k, m in d["metrics"].items():
            change = ""
            if _number(m["a"]) and _number(m["b"]) and math.isfinite(m["a"]) and math.isfinite(m["b"]):
                change = f"{m['b'] - m['a']:+.4g}"
            rows.append([k, render.format_value(m["a"]), render.format_value(m["b"]), change])
        _out(render.table(["metric", a, b, "change"], rows, align="lrrr"))
    evaluated = d.evaluations.get("metrics", {})
    if evaluated:
        _out()
        rows = [[k, render.format_value(m["a"]), render.format_value(m["b"])] for k, m in evaluated.items()]
        _out(render.table(["evaluated (latest)", d.a, d.b], rows, align="lrr"))
    for key, curve in d.curves.items():
        shared = sum(1 for x, y in zip(curve["a"], curve["b"], strict=True) if x is not None and y is not None)
        _out(f"curve {key}: {len(curve['steps'])} steps, {shared} in both")
    return 0


def cmd_eval(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    if args.script:
        namespace, where = _run_script(Path(args.script)), args.script
    elif _namespace(args) is not None:
        namespace, where = _namespace(args) or {}, "this notebook"
    else:
        raise UsageError("say where the evaluation function is: --script FILE.py")

    def pick(name: str, what: str) -> Any:
        if name not in namespace:
            found = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_"))
            raise UsageError(f"{where} defines no {what} {name!r}; it defines: {', '.join(found[:20]) or 'nothing'}")
        return namespace[name]

    fn = pick(args.function, "function")
    if not callable(fn):
        raise UsageError(f"{args.function} in {where} is not a function")
    module = pick(args.module, "module factory")() if args.module else None
    data = None
    if args.data:
        data = pick(args.data, "data")
        data = data() if callable(data) else data
    evaluation = repo.eval(
        args.ref,
        fn,
        module=module,
        data=data,
        snapshot=args.snapshot,
        progressive=args.progressive,
        precision=args.precision,
    )
    args.result = evaluation
    if args.json:
        _json(evaluation.to_dict())
        return 0
    _out(f"evaluated {evaluation.ref} with {evaluation.function} in {evaluation.seconds:.3g} s")
    rows = [[k, render.format_value(v)] for k, v in evaluation.metrics.items()]
    _out(render.table(["metric", "value"], rows, align="lr", indent=2))
    return 0


def cmd_query(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    from nbmodelhub.dql import DQLSyntaxError

    namespace = _run_script(Path(args.script)) if args.script else _namespace(args) or {}
    try:
        result = repo.query(args.text, namespace)
    except DQLSyntaxError as exc:  # the one error worth more than a line: the query with a caret under it
        if _namespace(args) is not None:
            raise  # the %dlv magic shows it
        _error(str(exc))
        print("\n".join(str(exc).splitlines()[1:]), file=sys.stderr)
        return exc.exit_code
    committed = [m.commit(repo, name=args.commit) for m in result.models] if args.commit else []
    args.result = result
    if args.json:
        _json({**result.to_dict(), "committed": [v.to_dict() for v in committed]})
        return 0
    if result.kind == "select":
        if not result.versions:
            _out("no versions match")
            return 0
        rows = [
            [v.ref, v.id[:10], render.short_time(v.created), render.truncate(v.message, 40),
             render.compact_kv(v.params, 40), render.compact_kv(v.metrics, 32), _tags(v)]
            for v in result.versions
        ]  # fmt: skip
        _out(render.table(["ref", "id", "created", "message", "params", "metrics", "tags"], rows))
    elif result.kind == "evaluate":
        rows = [[t.label, t.status, render.compact_kv(t.metrics, 40), t.version.ref if t.version else t.error or ""]
                for t in result.trials]  # fmt: skip
        _out(render.table(["variant", "status", "metrics", "version"], rows))
    else:
        for m in result.models:
            _out(f"{result.kind} of {m.source.ref}: {len(m.graph)} layers; {'; '.join(m.changes)}")
        for v in committed:
            _out(f"committed {v.ref}")
        if not committed:
            _out("not committed: add --commit NAME to store them")
    return 0


def _run_script(path: Path) -> dict[str, Any]:
    """Execute the user's own script as ``python FILE.py`` would (``__main__``, its folder on sys.path)."""
    import runpy

    if not path.is_file():
        raise UsageError(f"no such script: {path}")
    folder = str(path.resolve().parent)
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(path)]
    sys.path.insert(0, folder)
    try:
        return runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        raise UsageError(f"{path} exited ({exc.code}) while loading: guard its own work with if __name__ ...") from exc
    except Exception as exc:
        raise UsageError(f"{path} failed while loading: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def cmd_copy(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    version = repo.copy(args.ref, args.new_name, message=args.message)
    args.result = version
    if args.json:
        _json(version.to_dict())
        return 0
    source = version.parent_refs[0] if version.parent_refs else args.ref
    _out(f"copied {source} to {version.ref} ({version.id[:10]}); the two share every object, nothing was duplicated")
    return 0


def cmd_tag(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    version = repo.tag(args.ref, args.tag, force=args.force)
    args.result = version
    if args.json:
        _json(version.to_dict())
        return 0
    _out(f"tagged {version.ref} as {version.model}:{args.tag}")
    return 0


def cmd_delete(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    version = repo.delete(args.ref)
    args.result = version
    if args.json:
        _json(version.to_dict())
        return 0
    _out(f"deleted {version.ref} ({version.id[:10]}); `dlv gc` frees the data only it used")
    return 0


def cmd_gc(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    report = repo.gc(break_lock=args.break_lock)
    args.result = report
    if args.json:
        _json(dataclasses.asdict(report))
        return 0
    if report.removed:
        what = ", ".join(
            f"{n} {kind.removesuffix('s') if n == 1 else kind}" for kind, n in sorted(report.removed.items())
        )
        _out(f"removed {what}; freed {render.human_bytes(report.bytes_freed)}; kept {_plural(report.kept, 'object')}")
    else:
        _out(f"nothing to remove; kept {_plural(report.kept, 'object')}")
    return 0


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?)?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def _byte_count(text: str) -> int:
    """``123``, ``64MB``, ``1.5GiB``: a number of bytes for --max-recreate-bytes."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give bytes, e.g. 200MB or 1GiB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def cmd_archive(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    if args.all == bool(args.model):
        raise UsageError("name the MODEL to archive, or give --all for every model (not both)")
    report = repo.archive(
        None if args.all else args.model,
        max_chain=args.max_chain,
        max_recreate_bytes=args.max_recreate_bytes,
        unpack=args.unpack,
    )
    args.result = report
    if args.json:
        _json({**dataclasses.asdict(report), "ratio": report.ratio})
        return 0
    what = f"{_plural(report.tensors, 'tensor')} of {_plural(report.versions, 'version')} ({', '.join(report.models)})"
    sizes = f"{render.human_bytes(report.bytes_before)} → {render.human_bytes(report.bytes_after)}"
    if report.unpacked:
        _out(f"unpacked {what}: {sizes}; every tensor is back in its commit form")
        return 0
    _out(f"archived {what}: {sizes} ({report.ratio:.2f}x, {render.human_bytes(report.logical_bytes)} uncompressed)")
    _out(
        f"  {report.whole} whole, {report.deltas} deltas (longest chain {report.longest_chain}); "
        f"{report.rewritten} re-encoded, {report.unchanged} already so; {report.seconds:.1f} s"
    )
    return 0


def cmd_fsck(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    if args.repair is None:
        report = repo.fsck()
    elif repo.store.backend.read_only:  # fsck opens read-only; a repair writes
        with mh.open(repo.location) as writable:
            report = writable.fsck(repair_from=args.repair or True)
    else:
        report = repo.fsck(repair_from=args.repair or True)
    args.result = report
    if args.json:
        _json({"ok": report.ok, **dataclasses.asdict(report)})
        return 0 if report.ok else 1
    for line in report.repaired + report.unrepaired:
        _out(line)
    counts = (
        f"{_plural(report.versions, 'version')}, {_plural(report.objects, 'object')}, "
        f"{render.human_bytes(report.bytes_checked)} checked"
    )
    if report.ok:
        debris = f"; {_plural(report.debris, 'unreachable object')} (`dlv gc` removes them)" if report.debris else ""
        _out(f"OK: {counts}{debris}")
        return 0
    for problem in report.problems:
        _out(problem)
    print(f"{PROG}: fsck found {_plural(len(report.problems), 'problem')} ({counts})", file=sys.stderr)
    return 1


def cmd_checkout(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    module = _from_namespace(args, args.out_file)
    if module is not None:  # %dlv checkout REF model: load the weights into the notebook's module
        if not hasattr(module, "load_state_dict"):
            raise UsageError(f"{args.out_file} is a {type(module).__name__}, not a torch module to load weights into")
        version = repo.checkout(args.ref, module, snapshot=args.snapshot)
        args.result = module
        _out(f"loaded {version.ref} into {args.out_file}")
        return 0
    out = Path(args.out_file).expanduser()
    suffix = out.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth", ".bin"):
        raise UsageError(f"cannot write {out.name}: name the output file .safetensors or .pt")
    if out.exists() and not args.force:
        raise UsageError(f"{out} already exists: pass --force to overwrite it")
    if not out.parent.is_dir():
        raise UsageError(f"no such folder: {out.parent}")
    version = repo.get(args.ref)
    try:
        state = repo.load(version, framework="torch", snapshot=args.snapshot)
    except ImportError:  # torch is optional for .safetensors
        if suffix != ".safetensors":
            raise UsageError(f"writing {out.name} needs PyTorch: install torch, or write a .safetensors file") from None
        state = repo.load(version, framework="numpy", snapshot=args.snapshot)
    left_out = _write_weights(state, out, suffix, untie=args.untie, ref=version.ref)
    written = {n: t for n, t in state.items() if n not in left_out}
    nbytes = sum(int(t.nbytes) for n, t in written.items() if n not in left_out)
    if args.json:
        _json(
            {
                "ref": version.ref,
                "id": version.id,
                "path": str(out.resolve()),
                "tensors": len(written),
                "bytes": nbytes,
                "left_out": left_out,
                "snapshot": args.snapshot,
            }
        )
        return 0
    snap = f" (snapshot at step {args.snapshot})" if args.snapshot is not None else ""
    _out(f"wrote {version.ref}{snap} to {out}: {_plural(len(written), 'tensor')}, {render.human_bytes(nbytes)}")
    if left_out:
        ties = ", ".join(f"{a} = {b}" for a, b in left_out.items())
        _out(f"tied names left out (safetensors stores shared tensors once): {ties}; pass --untie to write copies")
    return 0


def _write_weights(state: dict[str, Any], out: Path, suffix: str, untie: bool, ref: str) -> dict[str, str]:
    """Write atomically (a temporary file, then a rename) so a failure leaves no half file.

    safetensors refuses tensors that share memory, so by default a tied name (an alias of an
    earlier tensor) is left out and recorded in the file's metadata under ``nbmodelhub.ties``,
    as Hugging Face does; ``untie`` writes a copy under every name instead, for a plain
    ``load_state_dict(strict=True)``. A ``.pt`` keeps the ties: ``torch.save`` preserves sharing.
    Returns the left-out names, alias → canonical.
    """
    left_out: dict[str, str] = {}
    first: dict[int, str] = {}
    for name, tensor in state.items():
        canonical = first.setdefault(id(tensor), name)
        if canonical != name:
            left_out[name] = canonical
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        if suffix == ".safetensors":
            if untie:
                payload = {n: _own_copy(t) for n, t in state.items()}
                left_out = {}
            else:
                payload = {n: _contiguous(t) for n, t in state.items() if n not in left_out}
            metadata = {"format": "pt", "nbmodelhub.ref": ref}
            if left_out:
                metadata["nbmodelhub.ties"] = json.dumps(left_out, sort_keys=True)
            if _is_torch(next(iter(state.values()), None)):
                from safetensors.torch import save_file as save_torch

                save_torch(payload, tmp, metadata=metadata)
            else:
                from safetensors.numpy import save_file as save_numpy

                save_numpy(payload, tmp, metadata=metadata)
        else:
            import torch

            left_out = {}
            torch.save(state, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return left_out


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def _contiguous(t: Any) -> Any:
    if _is_torch(t):
        return t.contiguous()
    import numpy as np

    return np.ascontiguousarray(t)


def _own_copy(t: Any) -> Any:
    return t.clone().contiguous() if _is_torch(t) else t.copy()


def cmd_add(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    entries = repo.add(args.paths, author=args.author)
    if args.json:
        _json([e.to_dict() for e in entries])
        return 0
    for e in entries:
        _out(f"staged {e.name} ({render.human_bytes(e.size)})")
    _out(f"{_plural(len(entries), 'file')} staged; they are attached to the next `dlv commit`")
    return 0


def cmd_files(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    entries = repo.files(args.ref, include=args.include, sortby=args.sort)
    if args.json:
        _json([e.to_dict() for e in entries])
        return 0
    if not entries:
        _out("no files" + (f" match {args.include}" if args.include else ""))
        return 0
    rows = [[e.name, render.human_bytes(e.size), _mtime(e.mtime), e.hash[:10]] for e in entries]
    rows.append([f"total ({_plural(len(entries), 'file')})", render.human_bytes(sum(e.size for e in entries)), "", ""])
    _out(render.table(["name", "size", "modified", "hash"], rows, align="lr"))
    return 0


def _mtime(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def cmd_pull_files(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    written = repo.pull_files(args.ref, args.dest, names=args.names or None)
    if args.json:
        _json([str(p) for p in written])
        return 0
    for path in written:
        _out(f"wrote {path}")
    _out(f"{_plural(len(written), 'file')} pulled into {Path(args.dest).expanduser().resolve()}")
    return 0


# -- parser --------------------------------------------------------------------------------------


def cmd_runs(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    runs = repo.runs(active=True if args.active else None, author=args.author, model=args.model, status=args.status)
    args.result = runs
    if args.json:
        _json([r.to_dict() for r in runs])
        return 0
    if not runs:
        _out("no runs" + (" in progress" if args.active else ""))
        return 0
    rows = [
        [
            r.id,
            r.model,
            r.status,
            r.author,
            render.short_time(r.started),
            "" if r.last_step is None else r.last_step,
            r.points,
            render.compact_kv(r.metrics, 32),
            render.compact_kv(r.params, 32),
            r.version or "",
        ]
        for r in runs
    ]
    headers = ["id", "model", "status", "author", "started", "step", "points", "metrics", "params", "version"]
    _out(render.table(headers, rows, align="lllllrr"))
    return 0


def cmd_run(args: argparse.Namespace, repo: mh.Repository | None) -> int:
    assert repo is not None
    if args.action == "commit":
        version = repo.commit_run(args.run_id, message=args.message)
        args.result = version
        if args.json:
            _json(version.to_dict())
        else:
            _out(f"committed run {args.run_id} as {version.ref} ({_plural(len(version.snapshot_steps), 'snapshot')})")
        return 0
    repo.discard_run(args.run_id)
    if args.json:
        _json({"run": args.run_id, "status": "discarded"})
    else:
        _out(f"discarded run {args.run_id}; `dlv gc` reclaims its snapshots")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors in the same one-line shape as every other error."""

    def error(self, message: str) -> Any:  # argparse types this NoReturn
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: error: {message}\n")


# command(name, handler, mode, help) → the new subcommand's parser; mode "read"/"write"/None says how
# the repository is opened for it.
CommandAdder = Callable[[str, "Handler | None", "str | None", str], argparse.ArgumentParser]


def build_parser(extra: Callable[[CommandAdder], None] | None = None) -> argparse.ArgumentParser:
    """The ``dlv`` parser; ``extra`` adds commands (the ``%dlv`` magic adds its picture-only ones)."""
    common = _Parser(add_help=False)
    # SUPPRESS: given after the command, these override the top level; otherwise they leave it be.
    common.add_argument("--repo", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    shows = _Parser(add_help=False, parents=[common])
    shows.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON on stdout")

    parser = _Parser(
        prog=PROG,
        description="git for deep-learning models: version, compare and share model weights.",
        epilog="A version reference is name (latest), name@3, name:tag or a unique id prefix.",
    )
    parser.add_argument(
        "--repo",
        metavar="URL",
        default=None,
        help="repository folder or URL (default: $MODELHUB_PATH, else ~/.modelhub)",
    )
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks")
    parser.add_argument("--json", action="store_true", default=False, help="print JSON on stdout")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    def command(name: str, handler: Handler | None, mode: str | None, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, parents=[shows])
        p.set_defaults(handler=handler, mode=mode)
        return p

    p = command("init", cmd_init, None, "make (or open) a repository and print where it is")
    p.add_argument("location", nargs="?", metavar="PATH_OR_URL", help="default: --repo, $MODELHUB_PATH, ~/.modelhub")

    p = command("commit", cmd_commit, "write", "commit a .safetensors or .pt file as the next version of a model")
    p.add_argument("source", metavar="SOURCE", help="a .safetensors or .pt/.pth/.bin file")
    p.add_argument("-n", "--name", required=True, help="model name")
    p.add_argument("-m", "--message", default="", help="what changed")
    p.add_argument("--params", nargs="+", action="extend", metavar="K=V", help="hyperparameters, values parsed as JSON")
    p.add_argument("--metrics", nargs="+", action="extend", metavar="K=V", help="final metrics (or JSON curves)")
    p.add_argument("--files", nargs="+", action="extend", metavar="PATH", help="files or folders to attach")
    p.add_argument("--parent", nargs="+", action="extend", metavar="REF", help="parent version(s); default: latest")
    p.add_argument("--step", type=int, help="the training step of these weights")
    p.add_argument("--author", help="default: the current user")

    p = command("list", cmd_list, "read", "list versions, oldest first")
    p.add_argument("model", nargs="?", metavar="MODEL")
    p.add_argument("--message", metavar="TEXT", help="only versions whose message contains TEXT")
    p.add_argument("--last", type=int, metavar="N", help="only the N most recent")

    p = command("log", cmd_log, "read", "a model's lineage, newest first")
    p.add_argument("name", metavar="NAME")

    p = command("desc", cmd_desc, "read", "describe a version: metadata and its layers")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--snapshot", type=int, metavar="STEP", help="the snapshot at this training step")
    p.add_argument("--bins", type=int, default=64, metavar="N", help="histogram bins per layer (JSON output)")
    p.add_argument("--no-stats", action="store_true", help="shapes only: read no weights")

    p = command("diff", cmd_diff, "read", "what changed between two versions")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--all-params", action="store_true", help="show unchanged params too")
    p.add_argument("--snapshot-a", type=int, metavar="STEP", help="A's snapshot at this training step")
    p.add_argument("--snapshot-b", type=int, metavar="STEP", help="B's snapshot at this training step")

    p = command("eval", cmd_eval, "write", "run an evaluation function on a version and record its metrics")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--script", metavar="FILE.py", help="your script, run as `python FILE.py` would (%%dlv: optional)")
    p.add_argument("--function", required=True, metavar="NAME", help="fn(model, data) → dict of metrics, in FILE.py")
    p.add_argument("--module", metavar="NAME", help="a function in FILE.py returning the nn.Module to load into")
    p.add_argument("--data", metavar="NAME", help="a function (called) or value in FILE.py passed as data")
    p.add_argument("--snapshot", type=int, metavar="STEP", help="evaluate the snapshot at this training step")
    p.add_argument(
        "--progressive",
        action="store_true",
        help="FUNCTION returns per-example scores: score on high-order bytes first, read the rest only if needed",
    )
    p.add_argument("--precision", choices=["bf16", "fp16"], default="bf16", help="first pass of --progressive")

    p = command("query", cmd_query, "write", "run a DQL query: select, slice, construct or evaluate")
    p.add_argument("text", metavar="QUERY", help="e.g. 'select m where m.metrics.acc > 0.9'")
    p.add_argument("--script", metavar="FILE.py", help="evaluate: the script defining the config and train function")
    p.add_argument("--commit", metavar="NAME", help="slice/construct: commit each derived model as a version of NAME")

    p = command("copy", cmd_copy, "write", "start a new model from a version (shares its data)")
    p.add_argument("ref", metavar="REF")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.add_argument("-m", "--message", default=None)

    p = command("tag", cmd_tag, "write", "name a version: REF can then be written model:TAG")
    p.add_argument("ref", metavar="REF")
    p.add_argument("tag", metavar="TAG")
    p.add_argument("--force", action="store_true", help="move the tag if it names another version")

    p = command("checkout", cmd_checkout, "read", "write a version's weights to a .safetensors or .pt file")
    p.add_argument("ref", metavar="REF")
    p.add_argument("out_file", metavar="OUT_FILE")
    p.add_argument("--snapshot", type=int, metavar="STEP", help="the snapshot at this training step")
    p.add_argument("--force", action="store_true", help="overwrite OUT_FILE if it exists")
    p.add_argument("--untie", action="store_true", help="safetensors: write tied tensors under every name")

    p = command("add", cmd_add, "write", "stage files or folders for the next commit")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--author", help="default: the current user")

    p = command("files", cmd_files, "read", "list the files attached to a version")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--include", metavar="GLOB")
    p.add_argument("--sort", choices=["name", "mod", "size"], default="name")

    p = command("pull-files", cmd_pull_files, "read", "copy a version's files into a folder")
    p.add_argument("ref", metavar="REF")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: all")

    p = command("delete", cmd_delete, "write", "hide a version; gc reclaims its data")
    p.add_argument("ref", metavar="REF")

    p = command("gc", cmd_gc, "write", "remove objects no version uses")
    p.add_argument("--break-lock", action="store_true", help="clear the lock of a gc that died")

    p = command("archive", cmd_archive, "write", "re-encode snapshots compactly (PAS); --unpack reverses it")
    p.add_argument("model", nargs="?", metavar="MODEL")
    p.add_argument("--all", action="store_true", help="every model in the repository")
    p.add_argument(
        "--max-chain",
        type=int,
        default=DEFAULT_MAX_CHAIN,
        metavar="K",
        help=f"at most K deltas to read through for any tensor (default {DEFAULT_MAX_CHAIN}; 0: all whole)",
    )
    p.add_argument(
        "--max-recreate-bytes",
        type=_byte_count,
        default=None,
        metavar="B",
        help="at most B stored bytes read to recreate any tensor (e.g. 200MB)",
    )
    p.add_argument("--unpack", action="store_true", help="back to the commit form")

    p = command("fsck", cmd_fsck, "read", "verify every object against its hash")
    p.add_argument(
        "--repair",
        nargs="?",
        const="",
        default=None,
        metavar="HUB",
        help="fetch damaged or missing objects again from HUB (a remote's name or URL; default: origin)",
    )

    p = command("runs", cmd_runs, "read", "training runs: running, interrupted and committed, oldest first")
    p.add_argument("model", nargs="?", metavar="MODEL")
    p.add_argument("--active", action="store_true", help="only runs in progress")
    p.add_argument("--author", metavar="USER", help="only runs by USER")
    p.add_argument("--status", choices=["running", "interrupted", "committed", "discarded"])

    p = command("run", cmd_run, "write", "commit or discard an interrupted run (its process died)")
    p.add_argument("action", choices=["commit", "discard"])
    p.add_argument("run_id", metavar="ID", help="a run id or unique prefix, from `dlv runs`")
    p.add_argument("-m", "--message", default=None, help="commit message (default: the run's)")

    from nbmodelhub.cli_hub import add_commands  # here, not at the top: it imports this module's helpers

    add_commands(command)
    if extra is not None:
        extra(command)
    return parser


# -- entry point ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dlv``; returns the exit code (the console script passes it to ``sys.exit``)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if any("\x00" in a for a in argv):
        # No shell can pass one, but a script or the magic can: every path would fail deep in pathlib.
        _error("an argument contains a NUL character: remove it")
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    debug = bool(getattr(args, "debug", False))
    repo: mh.Repository | None = None
    try:
        if args.mode is not None:
            repo = mh.open(args.repo, read_only=args.mode == "read")
        return int(args.handler(args, repo) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `dlv list | head`: the reader left; say nothing, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except ModelHubError as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc))
        return exc.exit_code
    except OSError as exc:
        # The user's own files (unreadable, missing folder, disk full): not a bug, one line.
        if debug:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}")
        return 1
    except Exception as exc:
        if debug:
            traceback.print_exc()
            _error(f"{type(exc).__name__}: {exc}")
        else:
            _error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return 1
    finally:
        if repo is not None:
            try:
                repo.close()
            except Exception:
                if debug:
                    traceback.print_exc()


def _error(message: str) -> None:
    lines = message.strip().splitlines()
    line = lines[0] if lines else "unknown error"
    print(f"{PROG}: error: {line}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
