"""`autopilot kb …`: the knowledge base (ingest, search, recall@k on the labelled set)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from autopilot.runtime.cli.output import console, emit_json, fail, finish
from autopilot.runtime.config import get_settings

app = typer.Typer(no_args_is_help=True, help="Knowledge base: ingest, search, evaluate.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


@app.command("ingest")
def ingest_cmd(folder: Path, as_json: JsonOpt = False) -> None:
    """Ingest the markdown and text files under FOLDER (chunked by heading, with source)."""
    from autopilot.runtime.kb.store import ingest

    try:
        out = ingest(get_settings(), folder)
    except (OSError, ValueError) as err:
        fail(str(err), as_json=as_json)
    if as_json:
        emit_json({"ok": True, **out})
    else:
        console.print(f"ingested {out['chunks']} chunks from {out['files']} files")
    finish(0)


@app.command("search")
def search_cmd(query: str, k: int = 3, as_json: JsonOpt = False) -> None:
    """The k passages nearest to QUERY."""
    from autopilot.runtime.kb.store import ensure_shipped, search

    settings = get_settings()
    ensure_shipped(settings)
    hits = search(settings, query, k)
    if as_json:
        emit_json({"ok": True, "query": query, "hits": hits})
        finish(0)
    for h in hits:
        console.print(
            f"[bold]{h['score']:.3f}[/bold] {h['source']} › {h['heading']}\n  {h['text'][:200]}"
        )
    finish(0)


@app.command("eval")
def eval_cmd(k: int = 3, as_json: JsonOpt = False) -> None:
    """recall@k of the shipped knowledge base on the labelled queries (runtime/kb/kb_eval.json)."""
    from autopilot.runtime.kb.store import ensure_shipped, recall_at

    settings = get_settings()
    ensure_shipped(settings)
    labelled = json.loads((resources.files("autopilot.runtime.kb") / "kb_eval.json").read_text())
    out = recall_at(settings, labelled, k)
    if as_json:
        emit_json({"ok": True, **out})
    else:
        console.print(
            f"recall@{k}: {out['recall']:.3f} ({out['hits']}/{out['queries']}); misses: {out['misses']}"
        )
    finish(0)
