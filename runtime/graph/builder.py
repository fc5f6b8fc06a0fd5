"""The agent graphs. Runs started now take the local graph (runtime/graph/local.py): the
fused graph with `prepare` and `act` as local activities, no server round trip for an
auto-allowed action.
Runs started before it replay on the graph they ran on: the fused graph
(runtime/graph/fused.py), prepare → (act → approve? → finish|record)*, two activities for
an auto-allowed action; before that the five-node graph,
observe → assess → plan → (choose → gate → approve? → execute? → record)*."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from temporalio.common import RetryPolicy

from autopilot.runtime.graph import fused, local, nodes
from autopilot.runtime.graph.state import RunState

GRAPH_NAME = "agent"  # the five-node graph: histories from before the fused one
FUSED_GRAPH = "agent_fused"  # two activities per auto-allowed action
LOCAL_GRAPH = "agent_local"  # the same steps as local activities

_IO = {
    "execute_in": "activity",
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10),
}
_PURE = {"execute_in": "workflow"}
_Node = tuple[Callable[..., Any], dict[str, Any]]  # a node's function and its metadata
# Planning may ask a model (an answer and one repair): minutes, not the reads' seconds.
_PLAN = {**_IO, "start_to_close_timeout": timedelta(seconds=300)}


def _send(max_backoff_s: float, timeout_s: float) -> dict[str, object]:
    """The execute node: a send known not to have happened is retried with back-off for
    as long as the node lets it (settings.send_retry_hours), not for ten quick attempts;
    an unknown outcome is never raised, so never retried blindly."""
    return {
        "execute_in": "activity",
        # A worker killed mid-send is noticed when this passes: the retry then finds the
        # call started and never finished (unknown), or not started at all (sent now).
        "start_to_close_timeout": timedelta(seconds=timeout_s),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=max_backoff_s),
            maximum_attempts=0,  # unlimited: the node ends the action past its window
        ),
    }


def build_graph(*, max_send_backoff_s: float = 300.0, send_timeout_s: float = 90.0) -> StateGraph:
    """A fresh graph per worker: the Temporal plugin wraps the node functions in place."""
    g = StateGraph(RunState)
    g.add_node("observe", nodes.observe, metadata=_IO)
    g.add_node("assess", nodes.assess, metadata=_PURE)
    g.add_node("plan", nodes.plan, metadata=_IO)
    g.add_node("gate", nodes.gate, metadata=_IO)
    g.add_node("approve", nodes.approve, metadata=_PURE)
    g.add_node("execute", nodes.execute, metadata=_send(max_send_backoff_s, send_timeout_s))
    g.add_node("record", nodes.record, metadata=_IO)
    g.add_edge(START, "observe")
    g.add_edge("observe", "assess")
    g.add_edge("assess", "plan")
    g.add_conditional_edges("plan", nodes.choose, {"gate": "gate", END: END})
    g.add_conditional_edges("gate", nodes.after_gate, ["execute", "approve", "record"])
    g.add_conditional_edges("approve", nodes.after_approve, ["execute", "record"])
    g.add_edge("execute", "record")
    g.add_conditional_edges("record", nodes.choose, {"gate": "gate", END: END})
    return g


def build_fused_graph(
    *, max_send_backoff_s: float = 300.0, send_timeout_s: float = 90.0
) -> StateGraph:
    """The same nodes in fewer activities. `act` and `finish` may send, so they carry the
    send's retry policy (a send known not to have happened is retried with back-off)."""
    send = _send(max_send_backoff_s, send_timeout_s)
    return _fused_shape((fused.prepare, _PLAN), (fused.act, send), (fused.finish, send))


def _fused_shape(prepare: _Node, act: _Node, finish: _Node) -> StateGraph:
    """prepare → (act → approve? → finish|record)*, with the given prepare, act and finish
    (function, node metadata): the fused and the local graphs differ in nothing else."""
    g = StateGraph(RunState)
    g.add_node("prepare", prepare[0], metadata=prepare[1])
    g.add_node("act", act[0], metadata=act[1])
    g.add_node("approve", nodes.approve, metadata=_PURE)
    g.add_node("finish", finish[0], metadata=finish[1])
    g.add_node("record", nodes.record, metadata=_IO)
    g.add_edge(START, "prepare")
    g.add_conditional_edges("prepare", fused.choose, {"act": "act", END: END})
    g.add_conditional_edges("act", fused.after_act, {"approve": "approve", "act": "act", END: END})
    g.add_conditional_edges("approve", fused.after_approve, ["finish", "record"])
    g.add_conditional_edges("finish", fused.choose, {"act": "act", END: END})
    g.add_conditional_edges("record", fused.choose, {"act": "act", END: END})
    return g


def build_local_graph(
    *, max_send_backoff_s: float = 300.0, send_timeout_s: float = 90.0
) -> StateGraph:
    """The fused graph's shape; `prepare` and `act` start local activities from the
    workflow, `finish` is the fused graph's activity."""
    steps = local.LocalSteps(
        local.options(max_send_backoff_s=max_send_backoff_s, send_timeout_s=send_timeout_s)
    )
    # After an approval: an activity, so that the approver's Update is answered at once.
    finish = (fused.finish, _send(max_send_backoff_s, send_timeout_s))
    return _fused_shape((steps.prepare, _PURE), (steps.act, _PURE), finish)


def build_graphs(
    *, max_send_backoff_s: float = 300.0, send_timeout_s: float = 90.0
) -> dict[str, StateGraph]:
    """Every graph a worker (or a replayer) must hold: the current one and the one
    older histories ran on."""
    kw = {"max_send_backoff_s": max_send_backoff_s, "send_timeout_s": send_timeout_s}
    return {
        GRAPH_NAME: build_graph(**kw),
        FUSED_GRAPH: build_fused_graph(**kw),
        LOCAL_GRAPH: build_local_graph(**kw),
    }


def compiled(g: StateGraph) -> Any:
    """`g` compiled once per worker (a compile takes milliseconds, which every run's
    first workflow task would otherwise pay), copied per run with a checkpointer of its
    own. The compiled graph is kept on the graph object: one per worker's plugin."""
    app = g.__dict__.get("_autopilot_compiled")
    if app is None:
        app = g.__dict__["_autopilot_compiled"] = g.compile()
    return app.copy(update={"checkpointer": InMemorySaver()})
