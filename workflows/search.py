"""Search attributes of agent runs: account, agent, segment and status, so runs can be
filtered in the Temporal UI and CLI, e.g.
`temporal workflow list --query "AutopilotAccount='acc_1' AND AutopilotAgent='renewal'"`.

A run starts with them only where the namespace has them registered (`autopilot up`'s dev
server starts with them; elsewhere `ensure_search_attributes` adds them); a server that
cannot (the time-skipping test server, a namespace we may not administer) runs without."""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

ACCOUNT = SearchAttributeKey.for_keyword("AutopilotAccount")
AGENT = SearchAttributeKey.for_keyword("AutopilotAgent")
SEGMENT = SearchAttributeKey.for_keyword("AutopilotSegment")
STATUS = SearchAttributeKey.for_keyword("AutopilotStatus")
KEYS = (ACCOUNT, AGENT, SEGMENT, STATUS)

# `temporal server start-dev` registers them at start: the UI and `temporal workflow list
# --query` filter by them from the first run on.
DEV_SERVER_ARGS = [arg for k in KEYS for arg in ("--search-attribute", f"{k.name}=Keyword")]

_KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
log = logging.getLogger(__name__)


async def ensure_search_attributes(client: Client, namespace: str | None = None) -> bool:
    """Register the four keyword attributes in `namespace` (default: the client's) unless
    they are there already. False where the server cannot (no operator service, no
    permission, a same-named attribute of another type): runs then start without them."""
    namespace = namespace or client.namespace
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        have = dict(listed.custom_attributes)
        clash = [k.name for k in KEYS if k.name in have and have[k.name] != _KEYWORD]
        if clash:
            log.warning("search attributes %s exist with another type: runs start without", clash)
            return False
        missing = {k.name: _KEYWORD for k in KEYS if k.name not in have}
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
    except RPCError as err:
        if err.status == RPCStatusCode.ALREADY_EXISTS:  # another worker added them meanwhile
            return True
        log.warning("search attributes unavailable (%s): runs start without", err.message)
        return False
    return True


def run_attributes(
    agent: str, account_id: str, segment: str, status: str = "running"
) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(ACCOUNT, account_id),
            SearchAttributePair(AGENT, agent),
            SearchAttributePair(SEGMENT, segment),
            SearchAttributePair(STATUS, status),
        ]
    )
