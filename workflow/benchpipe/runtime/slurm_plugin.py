"""Two mends of snakemake-executor-plugin-slurm (2.8.0), applied by the workflow's main process
where the plugin is loaded (a run with ``--executor slurm``); each is a no-op elsewhere."""

from __future__ import annotations

import re
import sys
from typing import Any

# What sacct prints as the node list of a job that holds no node: a pending or just requeued one.
_NO_NODE = re.compile(r"^(None assigned|\(null\)|None)?$")


def mend_slurm_node_exclusion() -> bool:
    """Keep snakemake-executor-plugin-slurm from excluding a node that is not one; True if mended.

    After a NODE_FAIL the plugin (2.8.0) asks sacct for the job's node and excludes it from
    every later submission. A job that SLURM has already requeued holds no node, and sacct
    says ``None assigned``: every later sbatch then carries ``--exclude=None assigned``, which
    sbatch refuses, and the workflow fails a job that never ran. Only real node names are
    passed on from here on. Applied, like mend_slurm_status_query, by the main process.
    """
    plugin = sys.modules.get("snakemake_executor_plugin_slurm")
    submit_command = getattr(plugin, "get_submit_command", None)
    if submit_command is None or getattr(submit_command, "mended", False):
        return False

    def real_nodes_only(job: Any, params: Any, settings: Any = None, failed_nodes: Any = None,
                        **kwargs: Any) -> str:
        nodes = {node for node in failed_nodes or () if not _NO_NODE.match(node.strip())}
        return submit_command(job, params, settings, failed_nodes=nodes, **kwargs)

    real_nodes_only.mended = True  # type: ignore[attr-defined]
    plugin.get_submit_command = real_nodes_only  # type: ignore[union-attr]
    return True


def mend_slurm_status_query() -> bool:
    """Make snakemake-executor-plugin-slurm see a cancelled job as failed; True if it was mended.

    The plugin (2.8.0) compares sacct's state with CANCELLED, but sacct spells a job that
    scancel stopped ``CANCELLED by <uid>``: the plugin then takes it for running and the
    workflow waits forever. Only the state's first word is compared from here on. Applied by
    the workflow's main process where the plugin is loaded (a run with `--executor slurm`).
    """
    plugin = sys.modules.get("snakemake_executor_plugin_slurm")
    query = getattr(plugin, "query_job_status", None)
    if query is None or getattr(query, "mended", False):
        return False

    async def first_word_of_state(command: str, logger: Any) -> tuple[dict[str, str] | None, float | None]:
        states, seconds = await query(command, logger)
        if states is not None:
            states = {job: state.split(" by ", 1)[0] for job, state in states.items()}
        return states, seconds

    first_word_of_state.mended = True  # type: ignore[attr-defined]
    plugin.query_job_status = first_word_of_state  # type: ignore[union-attr]
    return True
