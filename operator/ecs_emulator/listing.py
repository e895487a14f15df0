"""Listing servers: ``GET /v1/{project_id}/cloudservers/detail`` ("Listing Details About ECSs", ListServersDetails).

Answer: 200 ``{"count": <servers matching the filters, all pages>, "servers": [<the server object of
GET /v1/{project_id}/cloudservers/{id}>, ...]}``, only servers of the path's project, each brought up to the clock.

Query parameters (as documented; the query is decoded as it is signed, RFC 3986, ``+`` is a plus):

- ``offset``: the **page number**, not a record index: default 1; 0 is the same as 1; a page past the end is
  empty (``count`` unchanged). Huawei now marks it deprecated in favour of ``marker``.
- ``limit``: page size, default 25 (`DEFAULT_LIMIT`), at most 1000 (`MAX_LIMIT`).
- ``marker``: the ID of the last server of the previous page; the page starts after it (Nova's marker). It must
  be a server of the project (else 400, as Nova's "marker not found"); with a marker, ``offset`` may only be 0/1.
- ``name``: fuzzy: a regular expression searched in the name (the docs: "." matches any character), so a plain
  string is a substring match.
- ``status``: one of the documented values (else 400). ``ACTIVE``, ``SHUTOFF`` and ``ERROR`` filter on the
  underlying vm_state, as the docs' "intermediate states" note says (ACTIVE also lists REBOOT/REBUILD/...,
  SHUTOFF also RESIZE/REBUILD, ERROR also REBUILD): here a server in REBUILD (vm_state ``stopped``) is listed
  under ``SHUTOFF`` and ``REBUILD``, not ``ACTIVE``. Any other value matches the status exactly.
- ``flavor``: the flavor ID, exact.
- ``tags``: comma-separated items ``key=value`` (that tag) or ``key`` (the key, any value); a server matches
  when it has every item. ``not-tags``: the same syntax; a server is left out when it has every item (Nova's
  ``not-tags``; with one item: when it has that tag). Tag keys and values cannot contain ``,`` or ``=``, so the
  split is unambiguous. Repeating ``tags`` / ``not-tags`` adds items; other parameters may appear once.
- ``server_id``: comma-separated server IDs, exact match (empty items are skipped, repeats collapse; not
  checked to be UUIDs, as the emulator's servers need not have UUID IDs). Given, it alone decides the answer
  (see "Listing by ID" below). At most 1000 distinct IDs (`MAX_SERVER_IDS`, else 400): the docs only advise
  <= 100 "to keep the URI short" and name no hard limit, so the emulator guesses one, the same as ``limit``'s.
  An empty value (``server_id=`` or only commas) is the same as leaving the parameter out.
- the other documented filters (``ip``, ``ip_eq``, ``enterprise_project_id``, ``reservation_id``) and unknown
  parameters are refused with 400 ``Ecs.0005`` naming the parameter, rather than silently ignored: the emulator
  does not model them.

Order: newest first (Nova's default sort, ``created`` descending), then by ID, so pages are stable while no server
is added or removed. Bad values: 400 ``Ecs.0005`` saying which parameter and what is allowed. The docs do not say
whether ``limit=0`` is allowed: the emulator refuses it (1 to 1000).

Listing by ID (``server_id`` given; the docs: "server_id wins and the other filters are ignored"): the answer
has exactly one entry per requested ID, in the order requested (first occurrence), and ``count`` is the number
of entries. A server of the path's project is its usual entry (the server object of GET, brought up to the clock);
any other ID (unknown, or a server of another project: nothing about it is shown) is an entry whose keys are those
of a server object, all null except ``id``, plus ``fault``: ``{"code": 404, "created": <now>, "message": "The ECS
<id> does not exist in project <project>.", "details": ""}`` (the SDK's ``Fault`` fields; the docs give no exact
text). ``name``, ``status``, ``flavor``, ``tags`` and ``not-tags`` select nothing, and the paging parameters
``limit``, ``offset`` and ``marker`` page nothing (every requested ID is listed; the marker is not looked up);
they are still checked for form, so a malformed value is 400 as without ``server_id``. A list never creates
servers, so ``auto_create_servers`` does not apply: an unknown ID is a fault entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ecs_emulator.clock import iso_seconds
from ecs_emulator.errors import invalid_request
from ecs_emulator.state import EmulatorState, Server

DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
MAX_SERVER_IDS = 1000  # a guess: the docs only advise <= 100 IDs per call
STATUSES = (
    "ACTIVE", "BUILD", "ERROR", "HARD_REBOOT", "MIGRATING", "REBOOT", "REBUILD", "RESIZE", "REVERT_RESIZE",
    "SHUTOFF", "VERIFY_RESIZE", "DELETED", "SHELVED", "SHELVED_OFFLOADED", "UNKNOWN",
)  # fmt: skip
_VM_STATE_FILTER = {"ACTIVE": "active", "SHUTOFF": "stopped", "ERROR": "error"}
SUPPORTED = ("offset", "limit", "marker", "name", "status", "flavor", "tags", "not-tags", "server_id")
_REPEATABLE = frozenset({"tags", "not-tags"})
_NOT_MODELLED = frozenset({"ip", "ip_eq", "enterprise_project_id", "reservation_id"})
# the keys of a server object: a fault entry (``server_id`` naming no server of the project) has them all, null
_SERVER_KEYS = tuple(Server(id="", project_id="", name="").api_json())

TagItem = tuple[str, str | None]  # (key, value); None: any value


@dataclass(frozen=True)
class ListQuery:
    page: int = 1
    limit: int = DEFAULT_LIMIT
    marker: str | None = None
    name: re.Pattern[str] | None = None
    status: str | None = None
    flavor: str | None = None
    tags: tuple[TagItem, ...] = ()
    not_tags: tuple[TagItem, ...] = ()
    server_ids: tuple[str, ...] = ()  # empty: not given (list by the filters)


def _integer(name: str, text: str, minimum: int, maximum: int | None = None) -> int:
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise invalid_request(f"query parameter {name}={text!r} must be {allowed}")
    value = int(text)
    if value < minimum or (maximum is not None and value > maximum):
        raise invalid_request(f"query parameter {name}={value} must be {allowed}")
    return value


def _tag_items(name: str, texts: Iterable[str]) -> tuple[TagItem, ...]:
    items: list[TagItem] = []
    for text in texts:
        for part in text.split(","):
            if not part:
                continue
            key, equals, value = part.partition("=")
            if not key:
                raise invalid_request(f"query parameter {name}: item {part!r} has no key (key=value or key)")
            items.append((key, value if equals else None))
    return tuple(items)


def _server_ids(text: str | None) -> tuple[str, ...]:
    """The distinct IDs of ``server_id``, in the order given; empty items are skipped."""
    ids = tuple(dict.fromkeys(part for part in (text or "").split(",") if part))
    if len(ids) > MAX_SERVER_IDS:
        raise invalid_request(
            f"query parameter server_id names {len(ids)} servers; at most {MAX_SERVER_IDS} at a time"
        )
    return ids


def parse_list_query(pairs: Sequence[tuple[str, str]]) -> ListQuery:
    """Check the query of a list call; raise ``Ecs.0005`` on the first problem."""
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        if key not in SUPPORTED:
            why = (
                "is not modelled by the emulator"
                if key in _NOT_MODELLED
                else "is not a parameter of this API"
            )
            raise invalid_request(f"query parameter {key!r} {why}; supported: {', '.join(SUPPORTED)}")
        values.setdefault(key, []).append(value)
    for key, given in values.items():
        if len(given) > 1 and key not in _REPEATABLE:
            raise invalid_request(f"query parameter {key} is given {len(given)} times; give it once")
    single = {key: given[0] for key, given in values.items() if given[0] != ""}

    page = _integer("offset", single["offset"], 0) if "offset" in single else 1
    limit = _integer("limit", single["limit"], 1, MAX_LIMIT) if "limit" in single else DEFAULT_LIMIT
    marker = single.get("marker")
    if marker is not None and page > 1:
        raise invalid_request(
            "give either offset (a page number) or marker (the last ID of a page), not both"
        )
    status = single.get("status")
    if status is not None and status not in STATUSES:
        raise invalid_request(f"query parameter status={status!r} must be one of {', '.join(STATUSES)}")
    name = None
    if "name" in single:
        try:
            name = re.compile(single["name"])
        except re.error as error:
            raise invalid_request(
                f"query parameter name={single['name']!r} is not a valid pattern: {error}"
            ) from None
    return ListQuery(
        page=max(page, 1),
        limit=limit,
        marker=marker,
        name=name,
        status=status,
        flavor=single.get("flavor"),
        tags=_tag_items("tags", values.get("tags", [])),
        not_tags=_tag_items("not-tags", values.get("not-tags", [])),
        server_ids=_server_ids(single.get("server_id")),
    )


def _has(server: Server, item: TagItem) -> bool:
    key, value = item
    return key in server.tags and (value is None or server.tags[key] == value)


def matches(server: Server, query: ListQuery) -> bool:
    if query.status is not None:
        vm_state = _VM_STATE_FILTER.get(query.status)
        if (server.vm_state != vm_state) if vm_state is not None else (server.status != query.status):
            return False
    if query.flavor is not None and server.flavor != query.flavor:
        return False
    if query.name is not None and not query.name.search(server.name):
        return False
    if not all(_has(server, item) for item in query.tags):
        return False
    return not (query.not_tags and all(_has(server, item) for item in query.not_tags))


def sort_key(server: Server) -> tuple[float, str]:
    return (-server.created, server.id)


def select(servers: Iterable[Server], query: ListQuery) -> tuple[int, list[Server]]:
    """(count of all matching servers, this page of them), in the list order."""
    servers = list(servers)
    found = sorted((server for server in servers if matches(server, query)), key=sort_key)
    if query.marker is not None:
        after = next((server for server in servers if server.id == query.marker), None)
        if after is None:
            raise invalid_request(f"marker {query.marker!r} is not a server of this project")
        start = sort_key(after)
        page = [server for server in found if sort_key(server) > start][: query.limit]
    else:
        first = (query.page - 1) * query.limit
        page = found[first : first + query.limit]
    return len(found), page


def _fault_entry(server_id: str, project_id: str, now: float) -> dict:
    entry: dict = dict.fromkeys(_SERVER_KEYS)
    entry["id"] = server_id
    entry["fault"] = {
        "code": 404,
        "created": iso_seconds(now),
        "message": f"The ECS {server_id} does not exist in project {project_id}.",
        "details": "",
    }
    return entry


def select_by_id(state: EmulatorState, project_id: str, server_ids: Iterable[str]) -> list[dict]:
    """The entries of a ``server_id`` list: each requested ID in order, a project's server up to the clock or a
    fault entry."""
    entries = []
    for server_id in server_ids:
        server = state.servers.get(server_id)
        if server is None or server.project_id != project_id:
            entries.append(_fault_entry(server_id, project_id, state.now()))
        else:
            state.refresh(server)
            entries.append(server.api_json())
    return entries
