"""The `plx` command: typer wiring only; the work is in commands.py, the printing in report.py."""

from __future__ import annotations

import json
import shutil
import sys
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from . import __version__
from .console import err, finish_run, handle_errors, redacted, run_command, run_labels, serve
from .errors import UsageError

app = typer.Typer(
    name="plx",
    help="Reproducible data-science experiments: YAML graphs of operations, run in parallel, cached, recorded.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
cache_app = typer.Typer(help="Inspect and maintain the artifact store and cache.", no_args_is_help=True, add_completion=False)
app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        # One write (print makes two): after a reader that stops at the first byte (`| head -c 1`),
        # a second write fails with EPIPE, which click turns into exit 1 (seen in 1 run of 3).
        if sys.stdout is not None:  # None when plx started with stdout closed (`>&-`)
            sys.stdout.write(f"plx {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """plx runs experiment graphs written in YAML."""


# ---- files ----------------------------------------------------------------------


@app.command()
@handle_errors
def init() -> None:
    """Make the current folder a plx project, with a runnable example."""
    from .commands import init as do_init

    # Always the current folder: the one the user is looking at, even inside another project.
    for rel, what in do_init(Path.cwd()):
        err(f"{what:<30} {rel}")
    err("next: plx validate && plx run graphs/example.yaml")


@app.command()
@handle_errors
def validate(paths: List[str] = typer.Argument(None, metavar="[PATH]...", help="Files or folders (default: every operation and graph of the project).")) -> None:
    """Validate operation and graph files; report every error with file:line:col."""
    from .commands import open_project
    from .commands import validate as do_validate

    project, lib = open_project()
    files, diags = do_validate(project, lib, paths or [])
    from .commands import raw_warnings

    for w in sorted(raw_warnings(lib), key=lambda d: (d.file, d.line or 0, d.col or 0)):
        err(f"plx: warning: {w}")
    diags.sort(key=lambda d: (d.file, d.line or 0, d.col or 0))
    for d in diags:
        err(f"plx: error: {d}")
    bad = len({d.file for d in diags})
    if diags:
        err(f"{len(diags)} error{'s' if len(diags) != 1 else ''} in {bad} file{'s' if bad != 1 else ''} ({len(files)} checked)")
        raise typer.Exit(1)
    err(f"{len(files)} file{'s' if len(files) != 1 else ''} valid")


class SchemaKind(str, Enum):
    operation = "operation"
    graph = "graph"


@app.command()
@handle_errors
def schema(kind: SchemaKind = typer.Argument(..., metavar="KIND", help="operation or graph")) -> None:
    """Print the JSON Schema of a file kind (for editors' YAML plugins and CI)."""
    from .schema import SCHEMAS

    print(json.dumps(SCHEMAS[kind.value], indent=2))


class GraphFormat(str, Enum):
    text = "text"
    dot = "dot"
    mermaid = "mermaid"
    svg = "svg"
    json = "json"


@app.command("graph")
@handle_errors
def graph_cmd(
    graph: str = typer.Argument(..., metavar="GRAPH", help="A graph file."),
    fmt: GraphFormat = typer.Option(GraphFormat.text, "--format", "-f", help="text, dot, mermaid, svg (the drawing of plx report) or json (node-link)."),
) -> None:
    """Print the DAG of a graph (sub-graphs expanded as parent/child)."""
    from .commands import graph_path, load_graph, open_project, render_graph

    project, lib = open_project()
    g = load_graph(lib, graph_path(project, graph))
    if fmt.value in ("svg", "json"):
        from .commands import graph_edges, make_plan_no_inputs
        from .planner import plan as make_plan
        from .report_html import graph_drawing

        nodes, edges = graph_edges(lib, g)
        ops = {t: task.op.name for t, task in make_plan_no_inputs(lib, g, make_plan).tasks.items()}
        print(graph_drawing(nodes, edges, fmt.value, ops))
        return
    print(render_graph(lib, g, fmt.value))


@app.command()
@handle_errors
def ops(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the operations of the project: name, runner, inputs, params, outputs, title."""
    from .commands import open_project
    from .commands import ops as do_ops
    from .report import dump_json, ops_table

    _, lib = open_project()
    rows = do_ops(lib)
    if as_json:
        dump_json(rows)
        return
    if not rows:
        err("no operations found; `plx init` creates an example")
        return
    print(ops_table(rows))


# ---- running --------------------------------------------------------------------


@app.command()
def run(
    graph: str = typer.Argument(..., metavar="GRAPH", help="The graph file to run."),
    nodes: List[str] = typer.Argument(None, metavar="[NODE]...", help="Run only these nodes and what they need."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Nodes run at once (default: plx.yaml jobs, else CPUs)."),
    param: List[str] = typer.Option([], "--param", "-p", help="NODE.PARAM=VALUE or NAME=VALUE (graph param); repeatable."),
    input_: List[str] = typer.Option([], "--input", "-i", help="NAME=PATH for a graph input; repeatable."),
    sweep: List[str] = typer.Option([], "--sweep", help="NAME=V1,V2,... or 'NAME=[JSON list]'; repeatable: every combination, one DAG."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run everything and refresh the cache."),
    keep_going: bool = typer.Option(False, "--keep-going", "-k", help="Keep launching independent nodes after a failure."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Print the plan: what would run, what is cached, and why."),
    rev: Optional[str] = typer.Option(None, "--rev", help="Take the graph, operation and tracked data files from this git revision."),
    executor: str = typer.Option("local", "--executor", help="local (a process pool here) or dask (a Dask cluster)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="The Dask scheduler, tcp://HOST:8786 (with --executor dask)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON on stdout."),
    remote: Optional[str] = typer.Option(None, "--remote", metavar="URL", help="A shared cache for this run (any fsspec URL; overrides PLX_REMOTE and plx.yaml)."),
    no_remote: bool = typer.Option(False, "--no-remote", help="Use no remote cache in this run."),
    name: Optional[str] = typer.Option(None, "--name", help="A name for the run (shown and filtered by plx log)."),
    tag: List[str] = typer.Option([], "--tag", help="A tag for the run; repeatable (a sweep's runs are also tagged with their combination)."),
    note: Optional[str] = typer.Option(None, "--note", help="A free-text note recorded with the run."),
) -> None:
    """Validate, plan and run a graph, or only the named nodes and their upstream."""
    # The body is console.run_command: entry.py calls it without typer for a plain command line.
    run_command(**locals())


@app.command()
@handle_errors
def rerun(
    run_ref: str = typer.Argument(..., metavar="RUN", help="A run id, a unique prefix, or 'last'."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Nodes run at once."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run everything and refresh the cache."),
    keep_going: bool = typer.Option(False, "--keep-going", "-k", help="Keep launching independent nodes after a failure."),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON on stdout."),
    name: Optional[str] = typer.Option(None, "--name", help="A name for the new run."),
    tag: List[str] = typer.Option([], "--tag", help="A tag for the new run; repeatable."),
    note: Optional[str] = typer.Option(None, "--note", help="A free-text note recorded with the new run."),
    remote: Optional[str] = typer.Option(None, "--remote", metavar="URL", help="A shared cache for this run (any fsspec URL; overrides PLX_REMOTE and plx.yaml)."),
    no_remote: bool = typer.Option(False, "--no-remote", help="Use no remote cache in this run."),
) -> None:
    """Run again the graph, operations and overrides recorded in RUN."""
    from . import commands
    from .report import reporter_for

    project, _ = commands.open_project()
    labels = run_labels(name, tag, note)
    record, notes = commands.rerun(
        project,
        run_ref,
        jobs=jobs,
        no_cache=no_cache,
        keep_going=keep_going,
        reporter=reporter_for(as_json),
        argv=redacted(sys.argv[1:]),
        labels=labels,
        remote=remote,
        no_remote=no_remote,
    )
    for note in notes:
        err(f"plx: note: {note}")
    finish_run(record, as_json)


@app.command()
@handle_errors
def compare(
    runs: List[str] = typer.Argument(..., metavar="RUN RUN...", help="Two or more runs (ids, prefixes or 'last')."),
    show_all: bool = typer.Option(False, "--all", help="Include values that are equal in every run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Params, inputs and numeric json outputs of runs, side by side."""
    from . import commands
    from .report import compare_table, dump_json

    if len(runs) < 2:
        raise UsageError("compare needs at least two runs")
    project, _ = commands.open_project()
    result = commands.compare(project, runs, show_all)
    if as_json:
        dump_json(result)
        return
    if not result["rows"]:
        err("no differences" + ("" if show_all else " (--all shows every value)"))
        return
    print(compare_table(result))


@app.command()
@handle_errors
def preview(
    graph: str = typer.Argument(..., metavar="GRAPH", help="A graph file."),
    node: str = typer.Argument(..., metavar="NODE", help="The node id (parent/child inside sub-graphs)."),
    param: List[str] = typer.Option([], "--param", "-p", help="Overrides, as for plx run."),
) -> None:
    """Print the script NODE would run, placeholders filled."""
    from . import commands

    project, lib = commands.open_project()
    print(commands.preview(project, lib, commands.graph_path(project, graph), node, param))


# ---- history --------------------------------------------------------------------


@app.command()
@handle_errors
def report(
    runs: List[str] = typer.Argument(None, metavar="[RUN]...", help="Runs to show (default: the last run, or every run of the last sweep)."),
    output: str = typer.Option("plx-report.html", "--output", "-o", help="The HTML file to write."),
) -> None:
    """Write one self-contained HTML page about runs: table, DAGs, timelines, charts, log tails."""
    from .commands import open_project
    from .report_html import write_report

    project, _ = open_project()
    path, ids = write_report(project, runs or [], Path(output))
    err(f"wrote {path} ({len(ids)} run{'s' if len(ids) != 1 else ''}); open it in a browser")


@app.command()
@handle_errors
def log(
    run_ref: Optional[str] = typer.Argument(None, metavar="[RUN]", help="A run id, a unique prefix, or 'last'."),
    node: Optional[str] = typer.Argument(None, metavar="[NODE]", help="Show this node's stdout (or --stderr / --worker)."),
    stderr: bool = typer.Option(False, "--stderr", help="The node's stderr."),
    worker: bool = typer.Option(False, "--worker", help="The node's worker log (what plx did)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the node ends (without NODE: the run's node changes, until it ends)."),
    attempt: Optional[int] = typer.Option(None, "--attempt", min=1, help="Show this attempt of a retried node (default: the last)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs to list."),
    graph: Optional[str] = typer.Option(None, "--graph", help="Only runs of this graph."),
    status: Optional[str] = typer.Option(None, "--status", help="Only runs with this status."),
    tag: List[str] = typer.Option([], "--tag", help="Only runs with this tag; repeatable (all must match)."),
    name: Optional[str] = typer.Option(None, "--name", help="Only runs with this name."),
    where: List[str] = typer.Option([], "--where", help="FIELD OP VALUE, e.g. 'metrics.eval.accuracy>0.9', 'params.lr=0.1', 'tags~base'; repeatable."),
    sort: Optional[str] = typer.Option(None, "--sort", help="[-]FIELD: sort by a field (- for descending), e.g. -metrics.eval.accuracy."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Extra columns: FIELD,FIELD,... e.g. params.lr,metrics.eval.accuracy."),
) -> None:
    """List runs; show one run's nodes; or print a node's logs."""
    from .commands import open_project
    from .history import History
    from .records import as_run

    project, _ = open_project()
    history = History(project.store)
    if run_ref is None:
        _list_runs(history, as_json, columns, graph=graph, status=status, limit=limit, tags=tag, name=name, where=where, sort=sort)
        return
    rid = history.resolve(run_ref)
    data = as_run(history.load(rid))
    if node is None:
        _show_run(history, rid, data, follow, as_json)
        return
    from .commands import open_node_log

    for part in open_node_log(history, rid, data, node, "worker" if worker else "stderr" if stderr else "stdout", follow, attempt):
        if isinstance(part, str):
            err(part)
        else:
            sys.stdout.buffer.write(part)
            sys.stdout.flush()


def _list_runs(history: Any, as_json: bool, columns: Optional[str], **filters: Any) -> None:
    """`plx log`: the runs, filtered and sorted, as a table or JSON."""
    from .report import dump_json, runs_table
    from .tracking import check_field, select_runs

    extra = [c.strip() for c in (columns or "").split(",") if c.strip()]
    for c in extra:
        check_field(c, "--columns")
    runs = select_runs(history, **filters)
    if as_json:
        dump_json(runs)
        return
    if not runs:
        err("no runs yet" if not any(filters[k] for k in ("graph", "status", "tags", "name", "where")) else "no runs match")
        return
    print(runs_table(runs, extra))


def _show_run(history: Any, rid: str, data: Any, follow: bool, as_json: bool) -> None:
    """`plx log RUN`: its nodes as a table or JSON; with -f, its node state changes until it ends."""
    from .commands import follow_run
    from .records import public_run
    from .report import dump_json, run_view

    if follow and not as_json:
        for lines in follow_run(history, rid):
            sys.stdout.write(lines)
            sys.stdout.flush()
    elif as_json:
        dump_json(public_run(data))
    else:
        print(run_view(rid, data))


@app.command("tag")
@handle_errors
def tag_cmd(
    run_ref: str = typer.Argument(..., metavar="RUN", help="A run id, a unique prefix, or 'last'."),
    tags: List[str] = typer.Argument(..., metavar="TAG...", help="Tags to add (or remove, with --remove)."),
    remove: bool = typer.Option(False, "--remove", help="Remove these tags instead of adding them."),
) -> None:
    """Add tags to a recorded run, or remove them."""
    from .commands import open_project
    from .tracking import relabel

    project, _ = open_project()
    data = relabel(project.store, run_ref, add=() if remove else tuple(tags), remove=tuple(tags) if remove else ())
    err(f"run {data['id']} tags: {', '.join(data['tags']) or '(none)'}")


@app.command("note")
@handle_errors
def note_cmd(
    run_ref: str = typer.Argument(..., metavar="RUN", help="A run id, a unique prefix, or 'last'."),
    text: str = typer.Argument(..., metavar="TEXT", help="The note (replaces the run's note; '' clears it)."),
) -> None:
    """Set the note of a recorded run."""
    from .commands import open_project
    from .tracking import relabel

    project, _ = open_project()
    data = relabel(project.store, run_ref, note=text, set_note=True)
    err(f"run {data['id']} note {'set' if data.get('note') else 'cleared'}")


@app.command()
@handle_errors
def get(
    run_ref: str = typer.Argument(..., metavar="RUN", help="A run id, a unique prefix, or 'last'."),
    output: str = typer.Argument(..., metavar="NODE.OUTPUT", help="A node's output, or a graph output by name."),
    dest: Optional[str] = typer.Option(None, "-o", "--output", help="Where to write (default ./<filename>; '-' for stdout)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing DEST."),
) -> None:
    """Copy an output artifact out of the store."""
    from .commands import get_output, open_output, open_project

    project, _ = open_project()
    if dest == "-":
        with open_output(project, run_ref, output) as stream:
            shutil.copyfileobj(stream, sys.stdout.buffer)
        sys.stdout.flush()
        return
    err(f"wrote {get_output(project, run_ref, output, dest, force)}")


# ---- cache ----------------------------------------------------------------------


# ---- sharing (README, "Sharing results") ----------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


@app.command()
@handle_errors
def push(
    runs: List[str] = typer.Argument(None, metavar="[RUN]...", help="Runs whose cache entries to upload (default: every local run)."),
    remote: Optional[str] = typer.Option(None, "--remote", metavar="URL", help="The remote (default: PLX_REMOTE, else plx.yaml)."),
) -> None:
    """Upload the cache entries and artifacts of runs to the remote (idempotent)."""
    from . import sharing
    from .commands import open_project
    from .report import TransferProgress, warn

    project = open_project()[0]
    r = sharing.push(project, runs or [], sharing.open_for_command(project, remote, warn, TransferProgress()))
    err(f"pushed {r['entries']} cache entries ({r['entries_there']} already there), {r['objects']} objects, {_mb(r['bytes'])} from {r['runs']} runs")
    if r["missing_locally"]:
        err(f"{r['missing_locally']} outputs are no longer in the local store (removed by `plx cache gc`?): not pushed")


@app.command()
@handle_errors
def pull(
    targets: List[str] = typer.Argument(..., metavar="GRAPH|RUN...", help="A graph file (what a run of it would take from the cache), or runs."),
    param: List[str] = typer.Option([], "--param", "-p", help="With GRAPH: overrides, as for plx run."),
    input_: List[str] = typer.Option([], "--input", "-i", help="With GRAPH: NAME=PATH, as for plx run."),
    remote: Optional[str] = typer.Option(None, "--remote", metavar="URL", help="The remote (default: PLX_REMOTE, else plx.yaml)."),
) -> None:
    """Download cache entries and artifacts from the remote into the local store."""
    from . import commands, sharing
    from .report import TransferProgress, warn

    project, lib = commands.open_project()
    rem = sharing.open_for_command(project, remote, warn, TransferProgress())
    graphs = [t for t in targets if Path(t).suffix in (".yaml", ".yml") or (Path(t).is_file())]
    if graphs:
        if len(targets) != 1:
            raise UsageError("pull takes one GRAPH, or runs")
        members, _ = commands.plan_members(lib, commands.graph_path(project, graphs[0]), targets=[], params=param, inputs=input_)
        r = sharing.pull_graph(project, members[0].plan, rem)
        err(f"pulled {r['entries']} cache entries ({_mb(r['bytes'])}); a run would now take {r['cached']} nodes from the cache and run {r['run']}")
        return
    if param or input_:
        raise UsageError("-p and -i go with a GRAPH, not with runs")
    r = sharing.pull_runs(project, targets, rem)
    err(f"pulled {r['entries']} cache entries and {r['objects']} other objects ({_mb(r['bytes'])}); {r['misses']} not found on the remote")
    if r["misses"]:
        raise typer.Exit(1)


@cache_app.command("verify")
@handle_errors
def cache_verify(
    remote: bool = typer.Option(False, "--remote", help="Also download and re-hash every object of the remote."),
) -> None:
    """Re-hash every stored artifact; report damage (exit 1)."""
    from .cache_admin import verify
    from .commands import open_project

    project, _ = open_project()
    checked, damaged = verify(project)
    for h, why in damaged:
        err(f"damaged: {h} ({why})")
    err(f"{checked} objects checked, {len(damaged)} damaged")
    if remote:
        from . import sharing
        from .report import TransferProgress, warn

        rem = sharing.open_for_command(project, None, warn, TransferProgress())
        r_checked, r_damaged = sharing.verify_remote(project, rem)
        for h, why in r_damaged:
            err(f"damaged on the remote: {h} ({why})")
        err(f"remote {rem.shown}: {r_checked} objects checked, {len(r_damaged)} damaged")
        if r_damaged:
            err("damaged remote objects are never served (each is a miss); the next run that misses on one recomputes it and pushes a good copy")
        if damaged:
            err("damaged objects are never served: the nodes that made them run again on the next `plx run`")
        if damaged or r_damaged:
            raise typer.Exit(1)
        return
    if damaged:
        err("damaged objects are never served: the nodes that made them run again on the next `plx run`")
        raise typer.Exit(1)


@cache_app.command("gc")
@handle_errors
def cache_gc(keep_last: Optional[int] = typer.Option(None, "--keep-last", min=0, help="First forget all but the last N runs.")) -> None:
    """Remove what no run in the history and no cache entry references."""
    from .cache_admin import gc
    from .commands import open_project

    project, _ = open_project()
    r = gc(project, keep_last)
    err(
        f"removed {r['runs']} runs, {r['entries']} cache entries, {r['objects']} objects ({r['object_bytes']:,} bytes), "
        f"{r['workdirs']} work folders kept from failed or killed nodes ({r['workdir_bytes']:,} bytes)"
        + (f", temporary files ({r['temp_bytes']:,} bytes)" if r["temp_bytes"] else "")
        + (f", cache values in an older plx's format, never read ({r['old_format_bytes']:,} bytes)" if r["old_format_bytes"] else "")
        + f": {r['bytes']:,} bytes freed"
    )
    from .project import resolve_url

    url = resolve_url(project)
    if url:  # the remote is shared and the history that references things is per machine: never collected here
        from .remote import redact

        err(f"plx: note: the remote {redact(url)} is not touched (gc cleans this store only); what was removed here comes back from it on a miss, or with `plx pull`")
    if not r["exclusive"]:
        from .cache_admin import GRACE_SECONDS

        err(
            f"plx: note: plx is running nodes on this store ({r['live']} live run{'s' if r['live'] != 1 else ''}): kept every cache entry, "
            f"the work folders of live runs and objects stored in the last {GRACE_SECONDS // 60} minutes; run gc again when they end to remove the rest"
        )


@cache_app.command("stats")
@handle_errors
def cache_stats() -> None:
    """Print the number of objects, bytes and cache entries."""
    from .cache_admin import stats
    from .commands import open_project

    project, _ = open_project()
    s = stats(project)
    print(f"objects: {s['objects']}\nbytes:   {s['bytes']:,}\nentries: {s['entries']}\nruns:    {s['runs']}")


def main() -> None:
    _only_the_invoked_command(sys.argv[1:])
    serve(app)


def _only_the_invoked_command(argv: list[str]) -> None:
    """Leave out of the command line interface the commands this command line does not invoke.

    Typer turns the signature of every command into click parameters each time plx starts (~4 ms,
    a fortieth of a no-op run); a command line invokes one. `plx`, `plx --help`, `plx --version` or
    a name that is no command keep them all (the list, and click's "No such command" for a typo).
    It reads typer's registrations: should a typer release change them, plx keeps every command."""
    if not argv or argv[0].startswith("-"):
        return
    try:
        from typer.main import get_command_name

        commands = [c for c in app.registered_commands if (c.name or get_command_name(c.callback.__name__ if c.callback else "")) == argv[0]]
        groups = [g for g in app.registered_groups if g.name == argv[0]]
    except Exception:  # only a speed-up: never a reason not to start
        return
    if commands or groups:
        app.registered_commands, app.registered_groups = commands, groups
