"""varia's search attributes: `VariaState`, `VariaCompleted`, `VariaTotal`, `VariaPercent`.

They let operators filter jobs in the Web UI and `varia list` show progress. Upserting one
that the namespace lacks breaks the workflow task, so the workflow upserts only those a
worker found registered.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

VARIA_STATE = SearchAttributeKey.for_keyword("VariaState")
VARIA_COMPLETED = SearchAttributeKey.for_int("VariaCompleted")
VARIA_TOTAL = SearchAttributeKey.for_int("VariaTotal")
VARIA_PERCENT = SearchAttributeKey.for_float("VariaPercent")
SEARCH_ATTRIBUTES = (VARIA_STATE, VARIA_COMPLETED, VARIA_TOTAL, VARIA_PERCENT)
SEARCH_ATTRIBUTE_NAMES = [key.name for key in SEARCH_ATTRIBUTES]

CREATE_COMMAND = (
    "temporal operator search-attribute create --namespace <ns> "
    "--name VariaState --type Keyword --name VariaCompleted --type Int "
    "--name VariaTotal --type Int --name VariaPercent --type Double"
)


async def registered_search_attributes(client: Client, namespace: str) -> list[str]:
    """Which of varia's search attributes the namespace has (custom attributes listed)."""
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return [name for name in SEARCH_ATTRIBUTE_NAMES if name in response.custom_attributes]


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Register the missing ones (the dev server and the compose admin step use this)."""
    missing = set(SEARCH_ATTRIBUTE_NAMES) - set(
        await registered_search_attributes(client, namespace)
    )
    if not missing:
        return
    types = {
        "VariaState": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "VariaCompleted": IndexedValueType.INDEXED_VALUE_TYPE_INT,
        "VariaTotal": IndexedValueType.INDEXED_VALUE_TYPE_INT,
        "VariaPercent": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    }
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={name: types[name] for name in sorted(missing)},
        )
    )
