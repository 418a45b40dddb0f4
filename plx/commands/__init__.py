"""One plain function per command: takes arguments, returns data; the CLI only prints it.

By area: `running` (run, sweeps, dry run, rerun, preview), `history` (compare, get, a run's values),
`authoring` (validate, graph, ops, init); the cache's commands are `cache_admin` and `sharing`;
`-p`, `-i` and `--sweep` are parsed by `plx.overrides`. The names below are the ones callers use.
"""

from .authoring import graph_edges, init, make_plan_no_inputs, ops, raw_warnings, render_graph, validate
from .common import at_revision, graph_path, load_graph, open_project
from .history import compare, environment_values, follow_run, get_output, node_log, open_node_log, open_output, output_metrics, run_values
from .running import DASK_JOBS, dry_run, plan_members, preview, rerun, run, run_many

__all__ = [
    "DASK_JOBS",
    "at_revision",
    "compare",
    "dry_run",
    "environment_values",
    "get_output",
    "follow_run",
    "node_log",
    "open_node_log",
    "open_output",
    "graph_edges",
    "graph_path",
    "init",
    "load_graph",
    "make_plan_no_inputs",
    "open_project",
    "ops",
    "output_metrics",
    "plan_members",
    "preview",
    "raw_warnings",
    "render_graph",
    "rerun",
    "run",
    "run_many",
    "run_values",
    "validate",
]
