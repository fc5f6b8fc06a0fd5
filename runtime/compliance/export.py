"""One entry point for every framework: build the document, write it, validate it. The
CLI and the tests call this; nothing else decides which module serves which framework."""

from __future__ import annotations

from pathlib import Path

from autopilot.runtime.compliance import admt, data_act, eu_ai_act, iso42001, model_cards
from autopilot.runtime.compliance.evidence import ExportContext
from autopilot.runtime.compliance.render import FRAMEWORKS, Written, write


class ExportError(ValueError):
    """Bad input (an unknown framework, a missing --account): the message names the option."""


def export(
    ctx: ExportContext,
    framework: str,
    out: Path,
    *,
    contact_id: str | None = None,
    account_id: str | None = None,
) -> Written:
    if framework == "eu-ai-act":
        doc = eu_ai_act.build(ctx)
    elif framework == "iso42001":
        doc = iso42001.build(ctx)
    elif framework == "admt":
        try:
            doc = admt.build(ctx, contact_id=contact_id)
        except admt.UnknownContact as err:
            raise ExportError(str(err)) from err
    elif framework == "data-act":
        if not account_id:
            raise ExportError("--account: required for the data-act export")
        try:
            doc = data_act.build(ctx, account_id=account_id, out=out)
        except data_act.UnknownAccount as err:
            raise ExportError(str(err)) from err
    elif framework == "model-cards":
        doc = model_cards.build(ctx)
    else:
        raise ExportError(f"--framework: one of {', '.join(FRAMEWORKS)}, not {framework!r}")
    return write(doc, out)
