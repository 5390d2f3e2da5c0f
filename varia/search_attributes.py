"""varia's search attributes as typed keys: `VariaState`, `VariaCompleted`, `VariaTotal`,
`VariaPercent` (their names live in `varia.names`).

They let operators filter jobs in the Web UI and `varia list` show progress. Upserting one
that the namespace lacks breaks the workflow task, so the workflow upserts only those a
worker found registered.
"""

from __future__ import annotations

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from varia import names

VARIA_STATE = SearchAttributeKey.for_keyword(names.STATE_ATTRIBUTE)
VARIA_COMPLETED = SearchAttributeKey.for_int(names.COMPLETED_ATTRIBUTE)
VARIA_TOTAL = SearchAttributeKey.for_int(names.TOTAL_ATTRIBUTE)
VARIA_PERCENT = SearchAttributeKey.for_float(names.PERCENT_ATTRIBUTE)
SEARCH_ATTRIBUTES = (VARIA_STATE, VARIA_COMPLETED, VARIA_TOTAL, VARIA_PERCENT)
SEARCH_ATTRIBUTE_NAMES = [key.name for key in SEARCH_ATTRIBUTES]

CREATE_COMMAND = "temporal operator search-attribute create --namespace <ns> " + " ".join(
    f"--name {name} --type {kind}" for name, kind in names.SEARCH_ATTRIBUTE_TYPES.items()
)


async def registered_search_attributes(client: Client, namespace: str) -> list[str]:
    """Which of varia's search attributes the namespace has (custom attributes listed)."""
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return [name for name in SEARCH_ATTRIBUTE_NAMES if name in response.custom_attributes]
