"""Likeness: each offline stand-in answers exactly like the REAL upstream server it stands in for.

For every fixture indicator (fixtures/README.md) and every upstream tool the product's workflows call
(enrich, pivot, correlate: the tools their facades call, and the arguments they send), the same
``tools/call`` goes to

* the offline stand-in, ``python -m ioc_workflows_mcp.offline gti|secops|soar``, serving ``fixtures/``
  through the in-process emulation (``ioc_workflows_mcp/offline/backend.py``), and
* the real server (gti-mcp, google-secops-mcp, secops-soar-mcp from the ``.upstreams`` venv, as
  ``real_upstreams_config`` starts them), talking HTTP to the loopback fakes, which serve the same
  recordings through the same emulation,

and the two answers must be identical: every content block (type and text, byte for byte), ``isError``
and ``structuredContent``. An exception raised by the mcp 2.x client (a protocol error, or a
structuredContent that violates the tool's own outputSchema) is part of the answer and compared too.
``tools/list`` is compared for the tools we call: name, input properties (without descriptions) and
required arguments, and whether an outputSchema is declared.

Each of the six servers is started once for this module (module-scoped clients, held open in a
blocking portal's event loop), and every call is made up front, concurrently, so the tier stays fast;
each parametrized test then compares one pair and prints a unified diff when they differ.

What the two sides are given so that they CAN be identical (not normalization, just the same inputs):

* the stand-ins get the real servers' environment: ``GTI_BASE_URL`` (gti) and ``CHRONICLE_BASE_URL``,
  ``CHRONICLE_PROJECT_ID``, ``CHRONICLE_CUSTOMER_ID``, ``CHRONICLE_REGION`` (secops), which the stand-ins
  use only to shape the URLs quoted in error texts; so loopback ports and base URLs match as they are;
* SOAR serves every recorded timestamp shifted by ``now - recorded_at``, with ``now`` taken when the
  emulation loads. The fakes get ``Backends.load(now=NOW)``; the SOAR stand-in is started through a
  one-line wrapper that makes its ``Backends.load`` default to the same ``NOW`` (passed in
  ``IOC_LIKENESS_NOW``; the backend has no environment variable for it).

Normalizations: none. With the same inputs nothing differs for an honest reason: the time windows
the Chronicle tools compute from the time of the call never reach a tool's output (the SDK quotes the
URL without its query in error texts), and the data timestamps are the recordings' own. Equality is
checked on canonical JSON (``json.dumps(sort_keys=True)``), so ``1`` vs ``1.0`` or ``true`` vs ``1`` in
structuredContent is a difference too.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.upstream.gti import GtiFacade
from ioc_workflows_mcp.upstream.siem import SiemFacade, udm_query
from ioc_workflows_mcp.upstream.soar import SoarFacade
from tests.upstream_support.fakes import FakeBackends, load_backends

pytestmark = pytest.mark.upstream

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "fixtures"
NOW = datetime.now(UTC).replace(microsecond=0)  # SOAR's "now" on both sides (see the module docstring)
CALL_TIMEOUT = 60.0
CONCURRENCY = 12  # calls in flight per server

# --------------------------------------------------------------------------------------------------
# The fixture world (fixtures/README.md)

DOMAINS = [
    "secure-update.example.net",  # 1: malicious, every relationship recorded, 100 subdomains
    "login.example.net",  # 2a: suspicious
    "example.com",  # 5: benign, 5,000 synthetic communicating_files
    "intranet-sync.example.org",  # 10: VT 404, SIEM only
    "docs.example.org",  # 11: undetected
    "relay.secure-update.example.org",  # 1c: second-stage relay, malicious (depth 2/3 of a pivot)
    "share.example.org",  # 1d: undetected file-sharing hub, 250 synthetic communicating_files
]
IPS = [
    "8.8.8.8",  # 4: benign hub
    "2606:4700:4700::1111",  # 4a: IPv6
    "10.20.30.40",  # 7: private (never recorded in VT: 404)
    "203.0.113.66",  # 8: documentation range, malicious
    "198.51.100.7",  # 8a: documentation range, suspicious
    "104.18.32.7",  # 8a: CDN
]
URLS = [
    "https://login.example.net/reset",  # 2
    "http://secure-update.example.net/payload.bin",  # 1b
    "https://relay.secure-update.example.org/api/v2/sync",  # 1c: relay URL
]
DROPPER = {
    "sha256": "4d0eddad473d78894f64716c845d7550eaf3965545554d06b394cd49a295aed2",
    "md5": "bbfc82199132d11cba73aa7588c627e7",
    "sha1": "d8bf1737b6eac241e778d6ebaa763b3b7d6aa867",
}
PAYLOAD = {
    "sha256": "7d5706f314e1cd8271770210d080f169f6cec021ee8b3b6db3e7e66c0cb150bd",
    "md5": "a5be3636b32ec05cc9bd42cdc3160fa8",
    "sha1": "8d1cc5f383b3521f63eee30c3a77191479d5eaf5",
}
EICAR = {
    "sha256": "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
    "md5": "44d88612fea8a8f36de82e1278abb02f",
    "sha1": "3395856ce81f2b7382dee72602f798b642f14140",
}
EMPTY_FILE = {
    "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5": "d41d8cd98f00b204e9800998ecf8427e",
    "sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
}
IMPLANT = {  # 1c: the relay implant
    "sha256": "767fde2de1d2e4c31f65343d56df373d9a6489de5d2fecdd928781ba19c2a85b",
    "md5": "5a8005d475e15451b6ade0a9a181f4cf",
    "sha1": "a7dcb9203a6d0d5ef27e1dd300e5494902ea8b32",
}
NOT_FOUND_HASH = "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82"  # 6: 404 everywhere
HASHES = [h for file in (DROPPER, PAYLOAD, EICAR, EMPTY_FILE, IMPLANT) for h in file.values()] + [NOT_FOUND_HASH]
# relationship calls: every file in its sha256 form, plus the md5 and sha1 aliases of the dropper
RELATED_HASHES = [DROPPER["sha256"], DROPPER["md5"], DROPPER["sha1"], PAYLOAD["sha256"], EICAR["sha256"]]
RELATED_HASHES += [IMPLANT["sha256"]]
RELATED_HASHES += [EMPTY_FILE["md5"], NOT_FOUND_HASH]
COLLECTIONS = [
    "malware--5e0b7c1a-3f2d-5a4e-9c81-0000000000a1",
    "threat-actor--5e0b7c1a-3f2d-5a4e-9c81-0000000000a2",
    "campaign--5e0b7c1a-3f2d-5a4e-9c81-0000000000a3",
    "campaign--5e0b7c1a-3f2d-5a4e-9c81-0000000000a4",
    "malware--00000000-0000-5000-8000-00000000dead",  # not recorded: 404
]
INDICATORS = DOMAINS + IPS + URLS + HASHES

# The relationship names the pivot workflow asks for, per object type.
PIVOT_RELATIONSHIPS = {
    "get_entities_related_to_a_domain": (
        "domain",
        DOMAINS,
        ["resolutions", "communicating_files", "downloaded_files", "urls", "subdomains", "associations"],
    ),
    "get_entities_related_to_an_ip_address": (
        "ip_address",
        IPS,
        ["resolutions", "communicating_files", "downloaded_files", "urls", "associations"],
    ),
    "get_entities_related_to_a_file": (
        "hash",
        RELATED_HASHES,
        ["contacted_domains", "contacted_ips", "contacted_urls", "dropped_files", "execution_parents", "associations"],
    ),
    "get_entities_related_to_an_url": (
        "url",
        URLS,
        [
            "contacted_domains",
            "contacted_ips",
            "downloaded_files",
            "last_serving_ip_address",
            "network_location",
            "associations",
        ],
    ),
}
# descriptors_only true and false; the default limit (10, one page), a small one and one past a page
RELATIONSHIP_VARIANTS: list[dict[str, Any]] = [
    {"descriptors_only": True},
    {"descriptors_only": False},
    {"descriptors_only": False, "limit": 20},  # what pivot sends (max_items_per_relationship default)
    {"descriptors_only": True, "limit": 25},
    {"descriptors_only": False, "limit": 3},
]
# long lists: 5,000 synthetic files (10 pages at 10 up to the limit) and "exactly 100" subdomains
LONG_LISTS = [
    ("get_entities_related_to_a_domain", {"domain": "example.com", "relationship_name": "communicating_files"}),
    ("get_entities_related_to_a_domain", {"domain": "secure-update.example.net", "relationship_name": "subdomains"}),
]
REPORT_TOOLS = {
    "get_domain_report": ("domain", [*DOMAINS, "never-recorded.example.invalid"]),
    "get_ip_address_report": ("ip_address", IPS),
    "get_file_report": ("hash", HASHES),
    "get_url_report": ("url", [*URLS, "https://never-recorded.example.invalid/x"]),
}

# The tools the workflows call (enrich, pivot, correlate), per server: their tools/list entries are compared.
CALLED_TOOLS = {
    "gti": [*REPORT_TOOLS, *PIVOT_RELATIONSHIPS, "get_collection_report"],
    "secops": ["lookup_entity", "get_ioc_matches", "search_udm", "get_security_alerts"],
    "soar": [
        "list_cases",
        "get_case_full_details",
        "list_alert_group_identifiers_by_case",
        "get_entities_by_alert_group_identifiers",
        "search_entity",
    ],
}


# --------------------------------------------------------------------------------------------------
# The calls


@dataclass(frozen=True)
class Call:
    server: str  # "gti" | "secops" | "soar"
    tool: str
    arguments: dict[str, Any] = field(hash=False)

    @property
    def id(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.arguments.items())
        return f"{self.server}.{self.tool}({args})"


def _soar_records() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "soar" / "cases.json").read_text())


def _soar_selection() -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Case ids worth asking about (every case holding a fixture indicator, the newest and oldest three,
    an unknown id) and, per case with entities, its alert group identifiers."""
    wanted = {value.lower() for value in INDICATORS}
    records = _soar_records()
    ids: list[str] = []
    groups: list[tuple[str, list[str]]] = []
    for position, record in enumerate(records):
        case_id = str(record["case"]["id"])
        identifiers = {e["identifier"].lower() for entities in record["entities"].values() for e in entities}
        if identifiers & wanted or position < 3 or position >= len(records) - 3:
            ids.append(case_id)
            if record["entities"]:
                groups.append((case_id, sorted(record["entities"])))
    return [*ids, "999999"], groups


def build_calls() -> list[Call]:
    calls: list[Call] = []
    # gti: the reports enrich asks for, the relationships pivot walks, the collections pivot opens
    for tool, (argument, values) in REPORT_TOOLS.items():
        calls += [Call("gti", tool, {argument: value}) for value in values]
    for tool, (argument, values, relationships) in PIVOT_RELATIONSHIPS.items():
        for value in values:
            for relationship in relationships:
                for variant in RELATIONSHIP_VARIANTS:
                    calls.append(Call("gti", tool, {argument: value, "relationship_name": relationship, **variant}))
        # a name gti-mcp does not know: a dict returned where a list is declared
        calls.append(Call("gti", tool, {argument: values[0], "relationship_name": "bogus", "descriptors_only": True}))
    for tool, arguments in LONG_LISTS:
        calls.append(Call("gti", tool, {**arguments, "descriptors_only": False, "limit": 100}))
        calls.append(Call("gti", tool, {**arguments, "descriptors_only": True, "limit": 120}))
    calls += [Call("gti", "get_collection_report", {"id": collection}) for collection in COLLECTIONS]

    # secops: what enrich sends (30-day window, the product's limits and UDM queries), plus defaults
    for value in INDICATORS:
        calls.append(Call("secops", "lookup_entity", {"entity_value": value, "hours_back": 720}))
        query = udm_query(Indicator.parse(value))
        calls.append(Call("secops", "search_udm", {"query": query, "hours_back": 720, "max_events": 200}))
    calls += [
        Call("secops", "lookup_entity", {"entity_value": DOMAINS[0]}),
        Call("secops", "lookup_entity", {"entity_value": "fin-ws-040", "hours_back": 720}),
        Call("secops", "get_ioc_matches", {"hours_back": 720, "max_matches": 1000}),
        Call("secops", "get_ioc_matches", {"hours_back": 720, "max_matches": 2}),
        Call("secops", "get_ioc_matches", {}),
        Call("secops", "search_udm", {"query": 'target.hostname = "secure-update.example.net"', "max_events": 1}),
        Call("secops", "search_udm", {"query": 'principal.hostname = "unbalanced'}),  # 400 from the API
        Call("secops", "search_udm", {"query": 'target.ip = "8.8.8.8"', "start_time": "not a time"}),
        Call("secops", "get_security_alerts", {}),
        Call("secops", "get_security_alerts", {"hours_back": 720, "max_alerts": 200}),  # what correlate sends
        Call("secops", "get_security_alerts", {"hours_back": 720, "max_alerts": 2}),
        Call(
            "secops",
            "get_security_alerts",
            {"hours_back": 720, "max_alerts": 50, "status_filter": 'feedback_summary.status = "CLOSED"'},
        ),
    ]

    # soar: what correlate reads (list_cases pages are walked in their own test, below)
    case_ids, groups = _soar_selection()
    calls.append(Call("soar", "list_cases", {}))
    for case_id in case_ids:
        calls.append(Call("soar", "get_case_full_details", {"case_id": case_id}))
        calls.append(Call("soar", "list_alert_group_identifiers_by_case", {"case_id": case_id}))
    for case_id, identifiers in groups:
        calls.append(
            Call(
                "soar",
                "get_entities_by_alert_group_identifiers",
                {"case_id": case_id, "alert_group_identifiers": identifiers},
            )
        )
    calls.append(
        Call("soar", "get_entities_by_alert_group_identifiers", {"case_id": "999999", "alert_group_identifiers": ["x"]})
    )
    for value in INDICATORS:
        calls.append(Call("soar", "search_entity", {"term": value}))
    calls += [
        Call("soar", "search_entity", {}),
        Call("soar", "search_entity", {"term": "secure-update", "type": ["DestinationURL", "DOMAIN"]}),
        Call("soar", "search_entity", {"term": "10.20", "is_internal_asset": True, "environment_name": ["Finance"]}),
        Call("soar", "search_entity", {"term": "example", "is_suspicious": True}),
    ]
    return calls


CALLS = build_calls()
assert len({call.id for call in CALLS}) == len(CALLS), "duplicate call ids"


# --------------------------------------------------------------------------------------------------
# Normalization and rendering


def _outcome(result: Any) -> dict[str, Any]:
    blocks = []
    for block in result.content:
        entry = {"type": block.type}
        if hasattr(block, "text"):
            entry["text"] = block.text
        else:
            entry["data"] = block.model_dump(mode="json", exclude_none=True)
        blocks.append(entry)
    return {
        "isError": bool(result.is_error),
        "content": blocks,
        "structuredContent": result.structured_content,
    }


def _render(outcome: dict[str, Any]) -> list[str]:
    """Readable lines: each text block as its own lines (most are indent-2 JSON or prose)."""
    if "raised" in outcome:
        return [f"client raised: {outcome['raised']}"]
    lines = [f"isError: {json.dumps(outcome['isError'])}", f"content blocks: {len(outcome['content'])}"]
    for i, block in enumerate(outcome["content"]):
        lines.append(f"--- content[{i}] type={block['type']} ---")
        lines += block.get("text", json.dumps(block.get("data"))).splitlines() or [""]
    structured = outcome["structuredContent"]
    if isinstance(structured, dict) and set(structured) == {"result"} and isinstance(structured["result"], str):
        lines.append("--- structuredContent.result (a string) ---")  # secops' text tools: one line per line
        lines += structured["result"].splitlines() or [""]
    else:
        lines.append("--- structuredContent ---")
        lines += json.dumps(structured, indent=2, ensure_ascii=False).splitlines()
    return lines


def _canonical(outcome: dict[str, Any]) -> str:
    return json.dumps(outcome, sort_keys=True, ensure_ascii=False)


def assert_alike(label: str, standin: dict[str, Any], real: dict[str, Any]) -> None:
    if _canonical(standin) == _canonical(real):
        return
    diff = difflib.unified_diff(_render(real), _render(standin), "real server", "offline stand-in", lineterm="", n=3)
    body = "\n".join(diff)
    if not body:  # equal renderings: the difference is in JSON key order or value types
        body = f"real:     {_canonical(real)[:2000]}\nstand-in: {_canonical(standin)[:2000]}"
    pytest.fail(f"{label}: the stand-in differs from the real server\n{body}", pytrace=False)


# --------------------------------------------------------------------------------------------------
# The six servers, started once


# Starts the SOAR stand-in with Backends.load's `now` pinned to $IOC_LIKENESS_NOW (see the docstring).
_PINNED_STANDIN = (
    "import os, sys\n"
    "from datetime import datetime\n"
    "from ioc_workflows_mcp.offline import backend\n"
    "from ioc_workflows_mcp.offline.__main__ import main\n"
    "now = datetime.fromisoformat(os.environ['IOC_LIKENESS_NOW'])\n"
    "load = backend.Backends.load.__func__\n"
    "backend.Backends.load = classmethod(lambda cls, d=None, *, now=now: load(cls, d, now=now))\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _standin_parameters(name: str, real_env: dict[str, str]) -> Any:
    from mcp import StdioServerParameters

    env = {"IOC_WORKFLOWS_FIXTURES": str(FIXTURES), "IOC_LIKENESS_NOW": NOW.isoformat()}
    shared = {"GTI_BASE_URL", "CHRONICLE_BASE_URL", "CHRONICLE_PROJECT_ID", "CHRONICLE_CUSTOMER_ID", "CHRONICLE_REGION"}
    env.update({k: v for k, v in real_env.items() if k in shared})
    return StdioServerParameters(command=sys.executable, args=["-c", _PINNED_STANDIN, name], env=env)


def _real_parameters(entry: dict[str, Any]) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(command=entry["command"], args=list(entry["args"]), env=dict(entry["env"]))


@dataclass
class Pair:
    """One server and its stand-in, connected."""

    standin: Any
    real: Any
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)  # side -> {name: Tool}


class World:
    def __init__(self, portal: BlockingPortal, pairs: dict[str, Pair]) -> None:
        self.portal = portal
        self.pairs = pairs
        self.outcomes: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.requests: list[Any] = []  # what the real servers sent to the fakes during run_all

    async def call(self, server: str, side: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        client = getattr(self.pairs[server], side)
        try:
            with anyio.fail_after(CALL_TIMEOUT):
                result = await client.call_tool(tool, arguments, read_timeout_seconds=CALL_TIMEOUT)
        except Exception as exc:  # part of the answer: compared like the rest
            return {"raised": f"{type(exc).__name__}: {exc}"}
        return _outcome(result)

    async def call_both(self, server: str, tool: str, arguments: dict[str, Any]) -> tuple[dict, dict]:
        pair: list[Any] = [None, None]

        async def one(index: int, side: str) -> None:
            pair[index] = await self.call(server, side, tool, arguments)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 0, "standin")
            tg.start_soon(one, 1, "real")
        return pair[0], pair[1]

    async def run_all(self, calls: list[Call]) -> None:
        limits = {name: anyio.Semaphore(CONCURRENCY) for name in self.pairs}

        async def run(call: Call) -> None:
            async with limits[call.server]:
                self.outcomes[call.id] = await self.call_both(call.server, call.tool, call.arguments)

        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(run, call)

    async def list_tools(self) -> None:
        for pair in self.pairs.values():
            for side in ("standin", "real"):
                client = getattr(pair, side)
                tools: dict[str, Any] = {}
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
                    tools.update({tool.name: tool for tool in page.tools})
                    cursor = page.next_cursor
                    if not cursor:
                        break
                pair.tools[side] = tools


def say(request: pytest.FixtureRequest, line: str) -> None:
    """One line on the terminal, past output capture (phase timings of the tier)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


@contextlib.contextmanager
def open_clients(
    portal: BlockingPortal, servers: dict[str, Any], logs: Path, **client_options: Any
) -> Iterator[dict[str, Any]]:
    """Start every server of ``{key: StdioServerParameters}`` at once and connect an mcp 2.x ``Client``
    to each (stderr to ``logs/<key>.log``); yield ``{key: client}``; close them all at once.

    Each client lives in its own task of one hub task in the portal's event loop (a client's context
    must be entered and left in the same task), so starting six servers takes as long as the slowest."""
    from mcp import Client, stdio_client

    async def hub(errlogs: dict[str, Any], *, task_status: Any) -> None:
        stop = anyio.Event()
        clients: dict[str, Any] = {}

        async def host(key: str, *, task_status: Any) -> None:
            transport = stdio_client(servers[key], errlog=errlogs[key])
            async with Client(transport, read_timeout_seconds=CALL_TIMEOUT, **client_options) as client:
                task_status.started(client)
                await stop.wait()

        async with anyio.create_task_group() as hosts:

            async def start(key: str) -> None:
                clients[key] = await hosts.start(host, key)

            async with anyio.create_task_group() as starters:
                for key in servers:
                    starters.start_soon(start, key)
            task_status.started((clients, stop))

    with contextlib.ExitStack() as files:
        errlogs = {key: files.enter_context((logs / f"{key}.log").open("w")) for key in servers}
        try:
            future, (clients, stop) = portal.start_task(hub, errlogs)
            try:
                yield clients
            finally:
                portal.call(stop.set)
                future.result(timeout=60)
        except BaseException as exc:
            for key in servers:
                tail = (logs / f"{key}.log").read_text(errors="replace")[-2000:]
                if tail.strip():
                    exc.add_note(f"--- {key} stderr (tail) ---\n{tail}")
            raise


@pytest.fixture(scope="module")
def world(
    upstream_venv: Path,
    fake_backends_session: FakeBackends,
    real_upstreams_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("likeness")
    config = json.loads(real_upstreams_config.read_text())["mcpServers"]
    fake_backends_session.reset(load_backends(FIXTURES, now=NOW))
    try:
        servers = {}
        for name in ("gti", "secops", "soar"):
            servers[f"{name}-standin"] = _standin_parameters(name, config[name]["env"])
            servers[f"{name}-real"] = _real_parameters(config[name])
        started = time.perf_counter()
        with (
            start_blocking_portal() as portal,
            open_clients(portal, servers, logs, mode="legacy") as clients,
        ):
            pairs = {
                name: Pair(clients[f"{name}-standin"], clients[f"{name}-real"]) for name in ("gti", "secops", "soar")
            }
            world = World(portal, pairs)
            portal.call(world.list_tools)
            connected = time.perf_counter()
            fake_backends_session.clear_requests()
            portal.call(world.run_all, CALLS)
            world.requests = fake_backends_session.requests
            say(
                request,
                f"[likeness] 6 servers up in {connected - started:.1f} s; "
                f"{len(CALLS)} calls on each side in {time.perf_counter() - connected:.1f} s",
            )
            yield world
    finally:
        fake_backends_session.reset()


# --------------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("call", CALLS, ids=lambda call: call.id)
def test_same_answer(world: World, call: Call) -> None:
    standin, real = world.outcomes[call.id]
    assert_alike(call.id, standin, real)


def test_list_cases_pages(world: World) -> None:
    """Walk list_cases page by page (the stand-in's next page token drives both sides)."""
    token: str | None = None
    pages = 0
    while True:
        arguments = {"next_page_token": token} if token else {}
        standin, real = world.portal.call(world.call_both, "soar", "list_cases", arguments)
        assert_alike(f"soar.list_cases(page {pages + 1}, {arguments})", standin, real)
        pages += 1
        [block] = standin["content"]
        token = json.loads(block["text"]).get("nextPageToken")
        if not token:
            break
        assert pages < 50, "list_cases never ends"
    assert pages >= 2  # 260 cases at 50 a page
    bad, bad_real = world.portal.call(world.call_both, "soar", "list_cases", {"next_page_token": "not-a-token"})
    assert_alike("soar.list_cases(bad token)", bad, bad_real)


def test_real_servers_answered_from_the_fakes(world: World) -> None:
    """The comparison is worth something only if the real side really went to the recordings."""
    by_backend = {name: [r for r in world.requests if r.backend == name] for name in ("vt", "chronicle", "soar")}
    assert all(by_backend.values()), {name: len(requests) for name, requests in by_backend.items()}
    assert all(r.authorized for r in world.requests)
    answered = [r for r in world.requests if r.status == 200]
    assert len(answered) > len(world.requests) * 0.8, [(r.path, r.status) for r in world.requests if r.status != 200]


def _schema_view(tool: Any) -> dict[str, Any]:
    schema = tool.input_schema

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "description"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return {
        "properties": strip(schema.get("properties", {})),
        "required": sorted(schema.get("required", [])),
        "has_output_schema": tool.output_schema is not None,
    }


@pytest.mark.parametrize("server", sorted(CALLED_TOOLS))
def test_same_tools(world: World, server: str) -> None:
    pair = world.pairs[server]
    for name in CALLED_TOOLS[server]:
        real = pair.tools["real"].get(name)
        standin = pair.tools["standin"].get(name)
        assert real is not None, f"the real {server} server has no tool {name}"
        assert standin is not None, f"the {server} stand-in has no tool {name}"
        assert_alike(
            f"{server} tools/list {name} (descriptions ignored)",
            {"isError": False, "content": [], "structuredContent": _schema_view(standin)},
            {"isError": False, "content": [], "structuredContent": _schema_view(real)},
        )


def test_every_indicator_and_tool_is_covered() -> None:
    """Guards the coverage promise of this module against edits of the lists above, and against a
    workflow that starts calling an upstream tool this module does not compare."""
    for facade in (GtiFacade, SiemFacade, SoarFacade):
        missing = set(facade.tools) - set(CALLED_TOOLS[facade.upstream])
        assert not missing, f"{facade.__name__} calls {sorted(missing)}: add them to CALLED_TOOLS and CALLS"
    called = {(call.server, call.tool) for call in CALLS} | {("soar", "list_cases")}
    assert called == {(server, tool) for server, tools in CALLED_TOOLS.items() for tool in tools}
    asked: dict[str, set[str]] = {}
    for call in CALLS:
        for value in call.arguments.values():
            if isinstance(value, str):
                asked.setdefault(call.tool, set()).add(value)
    for tool in ("lookup_entity", "search_entity"):
        assert set(INDICATORS) <= asked[tool], set(INDICATORS) - asked[tool]
    reported = set().union(*(asked[tool] for tool in REPORT_TOOLS))
    assert set(INDICATORS) <= reported
