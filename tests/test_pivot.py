"""The pivot workflow: through an MCP client over stdio (the installed console script, as a host runs it),
and in process for what needs a fault injected or the backend's request log, plus the pure parts.

Expected counts are the ones fixtures/ implies for secure-update.example.net (fixtures/README.md, rows 1-1d):

* depth 1: resolutions 14 over 2 pages (203.0.113.66, 198.51.100.7, the CDN 104.18.32.7, 11 x 192.0.2.x),
  3 communicating files + 1 downloaded, 3 URLs, 100 subdomains (20 kept at the default limit),
  associations to 3 collections: 45 nodes, 44 edges.
* depth 2: the dropper, the payload and the payload URL are expanded (10 entities vetted: the per-level
  cap). They add example.com (GTI benign) and 8.8.8.8 (known benign), and three entities that depth 3
  expands: the second-stage relay domain relay.secure-update.example.org (malicious; contacted by the
  dropper and the payload), its relay URL (malicious) and share.example.org (an undetected file-sharing
  site): 50 nodes, 63 edges. The dropper and the payload are associated with the first campaign too.
* depth 3: the three are expanded. The relay domain resolves to 198.51.100.23 (new, a documentation-range
  policy leaf, also the relay URL's serving IP) and to the CDN 104.18.32.7 (shared infrastructure: now
  reached from two malicious domains, still a leaf), communicates with the implant relay_agent.dll (new,
  malicious, at the depth limit) and is associated with a second campaign, Operation Quiet Relay, as is
  the relay URL. share.example.org is a hub: its communicating_files list fills the limit (20 of 250) on
  a non-malicious source, so the 20 files are hub leaves; it also resolves to 192.0.2.80: 74 nodes, 96 edges.
* attribution at depth 3: EXAMPLEBEACON 4 paths, TA-EXAMPLE-07 3, Fake Software Update Campaign 2025 3
  (the indicator, the dropper, the payload), Operation Quiet Relay 2 (the relay domain and URL): the
  better-supported campaign is chosen, both are candidates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from ioc_workflows_mcp import scoring
from ioc_workflows_mcp.cache import SingleFlight
from ioc_workflows_mcp.indicator import Indicator
from ioc_workflows_mcp.models import Status
from ioc_workflows_mcp.offline import gti_server
from ioc_workflows_mcp.offline.backend import Backends, vt_error
from ioc_workflows_mcp.settings import Settings
from ioc_workflows_mcp.upstream.gti import GtiFacade, classify_api_error, classify_related_error
from ioc_workflows_mcp.upstream.pool import ToolOutput, UpstreamFailure
from ioc_workflows_mcp.upstream.siem import SiemFacade
from ioc_workflows_mcp.upstream.soar import SoarFacade
from ioc_workflows_mcp.workflows.pivot import PivotArgumentError, pivot, resolve_relationships
from ioc_workflows_mcp.workflows.sources import Sources
from tests.conftest import child_env, console_script, stdio_client

pytestmark = pytest.mark.anyio

DOMAIN = "secure-update.example.net"
DROPPER = "4d0eddad473d78894f64716c845d7550eaf3965545554d06b394cd49a295aed2"
PAYLOAD = "7d5706f314e1cd8271770210d080f169f6cec021ee8b3b6db3e7e66c0cb150bd"
PAYLOAD_URL_ID = "74d5804bcf513397aa9e71849f4857361374a47b307996a381085ac537e84541"
MALWARE = "malware--5e0b7c1a-3f2d-5a4e-9c81-0000000000a1"
ACTOR = "threat-actor--5e0b7c1a-3f2d-5a4e-9c81-0000000000a2"
CAMPAIGN = "campaign--5e0b7c1a-3f2d-5a4e-9c81-0000000000a3"
CAMPAIGN2 = "campaign--5e0b7c1a-3f2d-5a4e-9c81-0000000000a4"
STAGE2 = "relay.secure-update.example.org"
RELAY_URL_ID = "49b1135ed3b60971f7b385af56ad1823a0fd34656756e20c541badd39586abbe"
HUB = "share.example.org"
IMPLANT = "767fde2de1d2e4c31f65343d56df373d9a6489de5d2fecdd928781ba19c2a85b"
IMPLANT_MD5 = "5a8005d475e15451b6ade0a9a181f4cf"
CDN = "104.18.32.7"
HUB_REASON = f"reached only through a hub: {HUB} communicating_files returned 20 items"

# Entities GTI returned only inside the indicator's relationship lists (no relationships of their own in the
# fixtures): whole objects, so known to GTI and expanded without a report; they discover nothing.
INLINE_FILES = (
    "40ee050780a8ae6b3b110c46275adc7eabd971c1b052922b86a7ec42e9f77639",
    "483186172c7748d0473c308e7fc8dba7e5a84394430bb54e6f362b7e252fd28f",
)
INLINE_URLS = (
    "59e84a2d09d64db43a47b2d7ba12d88b65e1030be3574d1427303496c8682c9f",
    "ff1a3ce3af864d2e55885ef644895d3b800e7b52e2d7f323506c20a05fdedcad",
)
SUSPICIOUS_SUBDOMAINS = ("node010.secure-update.example.net", "node020.secure-update.example.net")
DEPTH1_EXPANDED = {
    f"file:{DROPPER}",
    f"file:{PAYLOAD}",
    f"url:{PAYLOAD_URL_ID}",
    *(f"file:{h}" for h in INLINE_FILES),
    *(f"url:{u}" for u in INLINE_URLS),
    *(f"domain:{d}" for d in SUSPICIOUS_SUBDOMAINS),
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[Client]:
    async with stdio_client(read_timeout_seconds=120) as session:
        yield session


def text_of(result: CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, TextContent))


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert text_of(result) == result.structured_content["summary"]
    return result.structured_content


def issued(data: dict[str, Any]) -> int:
    """Calls the pivot issued: made upstream, or answered by the session cache / an identical call."""
    return data["budget"]["calls"] + data["budget"]["shared_calls"]


def nodes_by_key(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["key"]: node for node in data["graph"]["nodes"]}


def sets_by_name(data: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    return {s["relationship"]: s for s in data["graph"]["relationship_sets"] if s["source"] == source}


def assert_no_entity_expanded_twice(data: dict[str, Any]) -> None:
    calls = [
        (p["tool"], tuple(sorted((k, str(v)) for k, v in p["arguments"].items())))
        for p in data["graph"]["section"]["provenance"]
    ]
    assert [c for c, n in Counter(calls).items() if n > 1] == []
    sets = Counter((s["source"], s["relationship"]) for s in data["graph"]["relationship_sets"])
    assert max(sets.values()) == 1


# --------------------------------------------------------------------------------------------------
# Through an MCP client over stdio


async def test_pivot_tool_is_listed_with_schema_and_annotations(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    tool = tools["pivot_ioc"]
    assert tool.description and "hub" in tool.description and len(tool.description) > 500
    assert tool.annotations is not None
    assert tool.annotations.read_only_hint is True and tool.annotations.open_world_hint is True
    schema = tool.output_schema or {}
    assert schema.get("title") == "PivotResult"
    assert {"direct_relationships", "campaign_context", "confidence_assessment", "graph", "budget"} <= set(
        schema["properties"]
    )
    assert {"ioc_value", "pivot_depth", "relationships", "budget", "min_verdict", "min_score", "max_age_days"} <= set(
        tool.input_schema["properties"]
    )


async def test_depth_1_exact_graph_and_attribution(client: Client) -> None:
    data = await call(client, "pivot_ioc", ioc_value=DOMAIN)
    assert data["data_mode"] == "offline-fixtures" and data["workflow"] == "pivot"
    assert (len(data["graph"]["nodes"]), len(data["graph"]["edges"])) == (45, 44)
    assert issued(data) == 7  # the report + 6 relationships
    assert data["budget"]["entities_expanded"] == 1
    direct = data["direct_relationships"]
    assert direct["section"]["status"] == "ok"
    assert len(direct["related_ips"]) == 14 and len(direct["related_files"]) == 4
    assert len(direct["related_urls"]) == 3 and len(direct["related_domains"]) == 20
    # C28: the 14 resolutions span two pages of 10; page 2 differs from page 1 and comes through.
    ips = [item["value"] for item in direct["related_ips"]]
    assert len(set(ips)) == 14 and {"203.0.113.66", "198.51.100.7", "104.18.32.7", "192.0.2.20"} <= set(ips)
    sets = sets_by_name(data, f"domain:{DOMAIN}")
    assert sets["resolutions"]["returned"] == 14 and not sets["resolutions"]["possibly_truncated"]
    assert sets["subdomains"]["returned"] == 20 and sets["subdomains"]["possibly_truncated"]
    assert "limit of 20" in sets["subdomains"]["truncation_reason"]
    assert data["possibly_truncated"] is True

    campaign = data["campaign_context"]
    assert campaign["threat_actor"] == "TA-EXAMPLE-07"
    assert campaign["campaign_name"] == "Fake Software Update Campaign 2025"
    assert campaign["malware_families"] == ["EXAMPLEBEACON"]
    assert {c["collection_id"]: c["paths"] for c in campaign["candidates"]} == {MALWARE: 1, ACTOR: 1, CAMPAIGN: 1}
    assert campaign["timeline_span"]["first_seen"] == "2025-04-17"  # the domain's creation_date
    assert campaign["infrastructure_overlap"]["score"] == 0
    conf = data["confidence_assessment"]
    assert conf["attribution_confidence"]["score"] == 50  # one path (40) + the indicator itself (10)
    nodes = nodes_by_key(data)
    assert "documentation (RFC 5737)" in nodes["ip:203.0.113.66"]["not_expanded_reason"]
    assert nodes[f"file:{DROPPER}"]["not_expanded_reason"] == "depth limit: pivot_depth=1"
    assert nodes[f"collection:{ACTOR}"]["collection_type"] == "threat-actor"
    assert data["errors"] == []


def sources_of(data: dict[str, Any], target: str) -> dict[str, set[str]]:
    """source -> relationship names of the edges into ``target``."""
    out: dict[str, set[str]] = {}
    for edge in data["graph"]["edges"]:
        if edge["target"] == target:
            out.setdefault(edge["source"], set()).add(edge["relationship"])
    return out


async def test_depth_2_exact_graph_benign_leaves_and_paths(client: Client) -> None:
    two = await call(client, "pivot_ioc", ioc_value=DOMAIN, pivot_depth=2)
    assert (len(two["graph"]["nodes"]), len(two["graph"]["edges"])) == (50, 63)
    nodes = nodes_by_key(two)
    # the 7 malicious files and URLs, then the 2 suspicious subdomains (best first, 10 per level at most)
    assert {k for k, n in nodes.items() if n["expanded"]} == {f"domain:{DOMAIN}", *DEPTH1_EXPANDED}
    assert {k for k, n in nodes.items() if n["depth"] == 2} == {
        "domain:example.com",
        "ip:8.8.8.8",
        f"domain:{STAGE2}",
        f"domain:{HUB}",
        f"url:{RELAY_URL_ID}",
    }
    # benign and shared infrastructure: kept as leaves, never expanded, each with its reason
    assert "public DNS resolver" in nodes["ip:8.8.8.8"]["not_expanded_reason"]
    assert "GTI verdict benign" in nodes[f"ip:{CDN}"]["not_expanded_reason"]  # the CDN address
    assert "GTI verdict benign" in nodes["domain:example.com"]["not_expanded_reason"]
    assert not any(s["source"] in ("ip:8.8.8.8", f"ip:{CDN}") for s in two["graph"]["relationship_sets"])
    sent = [p["arguments"] for p in two["graph"]["section"]["provenance"]]
    assert not any(a.get("ip_address") in ("8.8.8.8", "203.0.113.66", "198.51.100.7") for a in sent)
    assert not any(a.get("domain") == "example.com" for a in sent)
    # what depth 3 will expand waits at the depth limit, the relay domain worst first
    for key in (f"domain:{STAGE2}", f"url:{RELAY_URL_ID}", f"domain:{HUB}"):
        assert nodes[key]["not_expanded_reason"] == "depth limit: pivot_depth=2"
    assert (nodes[f"domain:{STAGE2}"]["verdict"], nodes[f"domain:{STAGE2}"]["threat_score"]) == ("malicious", 81)
    assert nodes[f"domain:{HUB}"]["verdict"] == "clean"
    assert sources_of(two, f"domain:{STAGE2}") == {
        f"file:{DROPPER}": {"contacted_domains"},
        f"file:{PAYLOAD}": {"contacted_domains"},
    }
    # the payload is reached from the indicator, the dropper and the payload URL; the relay domain from
    # the dropper and the payload
    overlap = two["campaign_context"]["infrastructure_overlap"]
    assert overlap["shared_entities"] == [f"file:{PAYLOAD}", f"url:{PAYLOAD_URL_ID}", f"domain:{STAGE2}"]
    assert (overlap["score"], overlap["considered"]) == (10, 30)
    campaign = two["campaign_context"]
    paths = {c["name"]: c["paths"] for c in campaign["candidates"]}
    assert paths == {"EXAMPLEBEACON": 3, "TA-EXAMPLE-07": 2, "Fake Software Update Campaign 2025": 3}
    malware = next(c for c in campaign["candidates"] if c["name"] == "EXAMPLEBEACON")
    assert malware["supporting_entities"] == [f"domain:{DOMAIN}", f"file:{DROPPER}", f"file:{PAYLOAD}"]
    assert (campaign["threat_actor"], campaign["campaign_name"]) == (
        "TA-EXAMPLE-07",
        "Fake Software Update Campaign 2025",
    )
    assert two["confidence_assessment"]["attribution_confidence"]["score"] == 65  # 2 paths (55) + direct (10)
    # 7 + 9 x 6 relationships + 1 report: the CDN address came from a resolution (detection counts only), so
    # it is vetted with its own report, which says benign. Entities that came whole are never vetted.
    assert issued(two) == 62
    vetted = [p["arguments"] for p in two["graph"]["section"]["provenance"] if p["tool"].endswith("_report")]
    assert vetted == [{"domain": DOMAIN}, {"ip_address": CDN}]
    assert two["budget"]["per_level"] == [
        {"depth": 0, "expanded": 1, "discovered": 44},
        {"depth": 1, "expanded": 9, "discovered": 5},
    ]
    assert two["budget"]["cut"] is True and two["budget"]["cut_reasons"]
    assert_no_entity_expanded_twice(two)


async def test_depth_3_reaches_the_second_stage_shared_infrastructure_hub_and_second_campaign(
    client: Client,
) -> None:
    one = await call(client, "pivot_ioc", ioc_value=DOMAIN, pivot_depth=1)
    two = await call(client, "pivot_ioc", ioc_value=DOMAIN, pivot_depth=2)
    three = await call(client, "pivot_ioc", ioc_value=DOMAIN, pivot_depth=3)
    assert three["pivot_depth"] == 3
    assert (len(three["graph"]["nodes"]), len(three["graph"]["edges"])) == (74, 96)
    # three different graphs, each a strict superset of the one before
    keys = [set(nodes_by_key(data)) for data in (one, two, three)]
    assert keys[0] < keys[1] < keys[2] and [len(k) for k in keys] == [45, 50, 74]
    nodes = nodes_by_key(three)
    assert {k for k, n in nodes.items() if n["expanded"]} == {
        f"domain:{DOMAIN}",
        *DEPTH1_EXPANDED,
        f"domain:{STAGE2}",
        f"url:{RELAY_URL_ID}",
        f"domain:{HUB}",
    }
    assert issued(three) == 80  # depth 2's 62 + 3 x 6 relationships (all three came whole: no report)
    assert three["budget"]["per_level"][2] == {"depth": 2, "expanded": 3, "discovered": 24}
    depth3 = {k for k, n in nodes.items() if n["depth"] == 3}
    hub_files = {k for k in depth3 if nodes[k]["not_expanded_reason"] == HUB_REASON}
    assert depth3 - hub_files == {
        "ip:198.51.100.23",
        f"file:{IMPLANT}",
        f"collection:{CAMPAIGN2}",
        "ip:192.0.2.80",
    }
    # new malicious content through the second stage
    implant = nodes[f"file:{IMPLANT}"]
    assert (implant["verdict"], implant["threat_score"]) == ("malicious", 86)
    assert implant["not_expanded_reason"] == "depth limit: pivot_depth=3"
    assert sources_of(three, f"file:{IMPLANT}") == {
        f"domain:{STAGE2}": {"communicating_files"},
        f"url:{RELAY_URL_ID}": {"downloaded_files"},
    }
    assert "documentation (RFC 5737)" in nodes["ip:198.51.100.23"]["not_expanded_reason"]
    assert sources_of(three, "ip:198.51.100.23") == {
        f"domain:{STAGE2}": {"resolutions"},
        f"url:{RELAY_URL_ID}": {"last_serving_ip_address"},
    }
    sent = [p["arguments"] for p in three["graph"]["section"]["provenance"]]
    assert not any(str(a.get("ip_address", "")).startswith(("198.51.100.", "192.0.2.")) for a in sent)

    # shared infrastructure: the CDN front end is reached from two malicious domains and stays a leaf
    assert sources_of(three, f"ip:{CDN}") == {f"domain:{DOMAIN}": {"resolutions"}, f"domain:{STAGE2}": {"resolutions"}}
    assert nodes[f"domain:{DOMAIN}"]["verdict"] == nodes[f"domain:{STAGE2}"]["verdict"] == "malicious"
    cdn = nodes[f"ip:{CDN}"]
    assert cdn["expanded"] is False and cdn["verdict"] == "clean"
    assert cdn["not_expanded_reason"] == "GTI verdict benign (VERDICT_BENIGN): not expanded"
    assert not any(s["source"] == f"ip:{CDN}" for s in three["graph"]["relationship_sets"])
    assert f"ip:{CDN}" not in three["campaign_context"]["infrastructure_overlap"]["shared_entities"]

    # the hub: a non-malicious site whose list fills the limit; its 20 files are leaves, never vetted
    hub_set = sets_by_name(three, f"domain:{HUB}")["communicating_files"]
    assert (hub_set["returned"], hub_set["kept"], hub_set["hub"], hub_set["possibly_truncated"]) == (20, 20, True, True)
    assert not any(s["hub"] for s in three["graph"]["relationship_sets"] if s["source"] != f"domain:{HUB}")
    assert nodes[f"domain:{HUB}"]["verdict"] == "clean" and nodes[f"domain:{HUB}"]["expanded"] is True
    assert len(hub_files) == 20 and all(nodes[k]["type"] == "file" for k in hub_files)
    assert all(sources_of(three, k) == {f"domain:{HUB}": {"communicating_files"}} for k in hub_files)
    hashes = {p["arguments"].get("hash") for p in three["graph"]["section"]["provenance"]}
    assert not hashes & {nodes[k]["id"] for k in hub_files}

    # two campaigns, reached by different numbers of independent paths: the better supported one wins
    campaign = three["campaign_context"]
    assert {c["collection_id"]: c["paths"] for c in campaign["candidates"]} == {
        MALWARE: 4,
        ACTOR: 3,
        CAMPAIGN: 3,
        CAMPAIGN2: 2,
    }
    by_id = {c["collection_id"]: c for c in campaign["candidates"]}
    assert by_id[CAMPAIGN]["supporting_entities"] == [f"domain:{DOMAIN}", f"file:{DROPPER}", f"file:{PAYLOAD}"]
    assert by_id[CAMPAIGN2]["supporting_entities"] == [f"domain:{STAGE2}", f"url:{RELAY_URL_ID}"]
    assert by_id[ACTOR]["supporting_entities"] == [f"domain:{DOMAIN}", f"file:{DROPPER}", f"domain:{STAGE2}"]
    assert (by_id[CAMPAIGN2]["name"], by_id[CAMPAIGN2]["collection_type"]) == ("Operation Quiet Relay", "campaign")
    assert campaign["threat_actor"] == "TA-EXAMPLE-07"
    assert campaign["campaign_name"] == "Fake Software Update Campaign 2025"
    assert campaign["malware_families"] == ["EXAMPLEBEACON"]
    assert "campaign_name" not in campaign["section"]["null_fields"]
    attribution = three["confidence_assessment"]["attribution_confidence"]
    assert (attribution["score"], attribution["level"]) == (80, "high")  # 3 paths (70) + direct (10)
    assert not any("ambiguous" in r or "as well supported" in r for r in attribution["reasons"])
    assert campaign["section"]["reason"] == "4 collection(s) reached through associations"
    assert_no_entity_expanded_twice(three)


async def test_a_hub_below_the_indicator_keeps_its_targets_unexpanded(client: Client) -> None:
    """From the dropper, share.example.org is at depth 1: its 20 files would be expanded at depth 2 if it
    were not a hub."""
    data = await call(client, "pivot_ioc", ioc_value=DROPPER, pivot_depth=3)
    nodes = nodes_by_key(data)
    assert nodes[f"domain:{HUB}"]["depth"] == 1 and nodes[f"domain:{HUB}"]["expanded"] is True
    hub_files = [k for k, n in nodes.items() if n["not_expanded_reason"] == HUB_REASON]
    assert len(hub_files) == 20 and all(nodes[k]["depth"] == 2 for k in hub_files)
    assert not any(s["source"] in hub_files for s in data["graph"]["relationship_sets"])
    campaign = data["campaign_context"]
    paths = {c["name"]: c["paths"] for c in campaign["candidates"]}
    # from the dropper, the implant is expanded too: both campaigns have 3 paths, and neither is picked
    assert (paths["Operation Quiet Relay"], paths["Fake Software Update Campaign 2025"]) == (3, 3)
    assert campaign["campaign_name"] is None and campaign["threat_actor"] == "TA-EXAMPLE-07"
    assert "ambiguous" in campaign["section"]["null_fields"]["campaign_name"]


async def test_analyze_ioc_pivot_is_pivot_ioc(client: Client) -> None:
    master = await call(client, "analyze_ioc", ioc_value=DOMAIN, analysis_type="pivot", pivot_depth=2)
    b = await call(client, "pivot_ioc", ioc_value=DOMAIN, pivot_depth=2)
    assert master["analysis_type"] == "pivot" and master["enrichment"] is None
    a = master["pivot"]
    assert a["workflow"] == "pivot"
    assert a["graph"]["nodes"] == b["graph"]["nodes"] and a["graph"]["edges"] == b["graph"]["edges"]
    assert a["campaign_context"]["candidates"] == b["campaign_context"]["candidates"]


async def test_c28_subdomains_at_the_server_cap_are_possibly_truncated_and_a_hub(client: Client) -> None:
    """C28, second half: VirusTotal stops subdomains at 100 with no cursor; the list is flagged."""
    data = await call(
        client,
        "pivot_ioc",
        ioc_value=DOMAIN,
        pivot_depth=2,
        relationships=["subdomains"],
        budget={"max_items_per_relationship": 150},
    )
    record = sets_by_name(data, f"domain:{DOMAIN}")["subdomains"]
    assert (record["returned"], record["possibly_truncated"], record["hub"]) == (100, True, True)
    assert "cap of 100" in record["truncation_reason"]
    subs = [n for n in data["graph"]["nodes"] if n["depth"] == 1]
    assert len(subs) == 100 and all("hub" in n["not_expanded_reason"] for n in subs)
    assert data["budget"]["entities_expanded"] == 1 and issued(data) == 2


async def test_c29_large_list_is_bounded_and_flagged(client: Client) -> None:
    data = await call(client, "pivot_ioc", ioc_value="example.com", relationships=["communicating_files"])
    record = sets_by_name(data, "domain:example.com")["communicating_files"]
    assert (record["returned"], record["limit"], record["possibly_truncated"], record["hub"]) == (20, 20, True, True)
    assert len(data["direct_relationships"]["related_files"]) == 20
    assert data["possibly_truncated"] is True


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("d41d8cd98f00b204e9800998ecf8427e", "MD5 of empty input"),  # C30
        ("8.8.8.8", "public DNS resolver"),
        ("10.20.30.40", "private (RFC 1918)"),
        ("203.0.113.66", "documentation (RFC 5737)"),
    ],
)
async def test_benign_and_non_routable_indicators_are_not_expanded(client: Client, value: str, fragment: str) -> None:
    data = await call(client, "pivot_ioc", ioc_value=value, pivot_depth=3)
    section = data["direct_relationships"]["section"]
    assert section["status"] == "skipped_policy" and fragment in section["reason"]
    assert data["graph"]["section"]["provenance"] == [] and data["budget"]["calls"] == 0
    assert len(data["graph"]["nodes"]) == 1 and data["graph"]["nodes"][0]["expanded"] is False
    assert data["campaign_context"]["threat_actor"] is None
    assert data["confidence_assessment"]["attribution_confidence"]["level"] == "none"


async def test_tiny_budget_cuts_and_says_why(client: Client) -> None:
    data = await call(client, "pivot_ioc", ioc_value=DOMAIN, pivot_depth=3, budget={"max_calls": 3})
    usage = data["budget"]
    assert issued(data) == 3 and usage["cut"] is True
    assert any("max_calls (3)" in reason for reason in usage["cut_reasons"])
    assert [s["relationship"] for s in data["graph"]["relationship_sets"]] == ["resolutions", "communicating_files"]
    per_level = await call(client, "pivot_ioc", ioc_value=DOMAIN, pivot_depth=2, budget={"max_entities_per_level": 2})
    assert per_level["budget"]["entities_expanded"] <= 3
    capped = await call(client, "pivot_ioc", ioc_value=DOMAIN, budget={"max_entities": 10})
    assert capped["budget"]["entities_in_graph"] == 10
    assert any("max_entities (10)" in reason for reason in capped["budget"]["cut_reasons"])


async def test_filters_are_counted_not_dropped_silently(client: Client) -> None:
    data = await call(client, "pivot_ioc", ioc_value=DOMAIN, min_verdict="malicious")
    kept = [n for n in data["graph"]["nodes"] if n["depth"] == 1 and n["type"] != "collection"]
    assert kept and all(n["verdict"] == "malicious" for n in kept)
    assert data["filtered"]["verdict_below_minimum"] == 33  # 12 clean IPs, 1 suspicious IP, 20 clean subdomains
    assert len(kept) == 44 - 3 - 33  # edges from the root minus collections and the filtered ones
    old = await call(client, "pivot_ioc", ioc_value=DOMAIN, max_age_days=1)
    assert old["filtered"]["older_than_max_age"] == 41 and issued(old) == 7
    scored = await call(client, "pivot_ioc", ioc_value=DOMAIN, min_score=90)
    assert set(scored["filtered"]) <= {"score_below_minimum", "no_score"} and sum(scored["filtered"].values()) > 0


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"ioc_value": DOMAIN, "pivot_depth": 0}, "pivot_depth\n  Input should be greater than or equal to 1; got 0"),
        ({"ioc_value": DOMAIN, "pivot_depth": 4}, "pivot_depth\n  Input should be less than or equal to 3; got 4"),
        (
            {"ioc_value": DOMAIN, "pivot_depth": True},
            "pivot_depth\n  Input should be a whole number, not true/false; got true",
        ),
        ({"ioc_value": DOMAIN, "relationships": ["resolutionz"]}, "resolutionz"),
        ({"ioc_value": DOMAIN, "relationships": {"domain": ["contacted_ips"]}}, "contacted_ips"),
        ({"ioc_value": DOMAIN, "relationships": {"colour": ["urls"]}}, "colour"),
        ({"ioc_value": DOMAIN, "budget": {"max_calls": 0}}, "max_calls"),
        ({"ioc_value": DOMAIN, "min_verdict": "evil"}, "min_verdict"),
        ({"ioc_value": "payload.xrat"}, "unknown TLD"),
    ],
)
async def test_bad_arguments_are_clear_tool_errors(client: Client, arguments: dict[str, Any], fragment: str) -> None:
    result = await client.call_tool("pivot_ioc", arguments)
    assert result.is_error
    assert fragment in text_of(result), text_of(result)


async def test_progress_notifications_reach_the_client(client: Client) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = await client.call_tool("pivot_ioc", {"ioc_value": DOMAIN, "pivot_depth": 2}, progress_callback=on_progress)
    assert not result.is_error
    assert len(seen) >= 10
    values = [p for p, _, _ in seen]
    assert values == sorted(values)
    assert any(m and "depth 2" in m for _, _, m in seen)


# --------------------------------------------------------------------------------------------------
# In process: the gti stand-in behind a pool that counts calls, with faults and the request log


class InProcessPool:
    """The pool's ``call`` over an in-memory MCP client of the gti stand-in; counts every call."""

    def __init__(self, client: Client):
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, upstream: str, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        if upstream != "gti":
            raise UpstreamFailure(upstream, Status.UNAVAILABLE, "not configured in this test")
        self.calls.append((tool, dict(arguments)))
        result = await self.client.call_tool(tool, arguments)
        texts = [block.text for block in result.content if isinstance(block, TextContent)]
        structured = result.structured_content
        has = structured is not None
        if isinstance(structured, dict) and set(structured) == {"result"}:
            structured = structured["result"]
        return ToolOutput(bool(result.is_error), texts, structured, has)


def in_process_sources(pool: Any, settings: Settings | None = None) -> Sources:
    flights = SingleFlight()
    return Sources(
        gti=GtiFacade(pool, None, flights),
        siem=SiemFacade(pool, None, flights),
        soar=SoarFacade(pool, None, flights),
        settings=settings or Settings(),
        data_mode="offline-fixtures",
    )


@pytest.fixture
async def standin() -> AsyncIterator[tuple[Backends, InProcessPool]]:
    backends = Backends.load()
    async with Client(gti_server.build_server(backends)) as c:
        yield backends, InProcessPool(c)


async def test_the_indicator_report_and_relationships_are_one_round_trip(
    standin: tuple[Backends, InProcessPool],
) -> None:
    """Depth 0 asks for the report and the 6 relationship lists at once: all 7 are in flight together."""
    _, pool = standin
    in_flight, most = 0, 0
    call = pool.call

    async def counting(upstream: str, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await anyio.sleep(0.05)
            return await call(upstream, tool, arguments)
        finally:
            in_flight -= 1

    pool.call = counting  # type: ignore[method-assign]
    result = await pivot(Indicator.parse(DOMAIN), in_process_sources(pool), 1)
    assert result.budget.calls == 7 and most == 7
    assert result.direct_relationships.section.status is Status.OK


@pytest.mark.parametrize(("rate_limited", "calls"), [(False, 7), (True, 1)])
async def test_an_unknown_indicator_is_not_found_and_costs_one_call_under_a_rate_limit(
    standin: tuple[Backends, InProcessPool], rate_limited: bool, calls: int
) -> None:
    """Unlimited, the relationship calls go out with the report and are wasted on an unknown indicator;
    with a per-minute quota the report goes first and nothing else is asked."""
    _, pool = standin
    settings = Settings.model_validate({"upstreams": {"gti": {"requests_per_minute": 4}}} if rate_limited else {})
    result = await pivot(Indicator.parse("never-seen.example.com"), in_process_sources(pool, settings), 2)
    assert len(pool.calls) == calls and pool.calls[0] == ("get_domain_report", {"domain": "never-seen.example.com"})
    section = result.direct_relationships.section
    assert section.status is Status.NOT_FOUND and "nothing to pivot from" in (section.reason or "")
    assert result.errors == [] and result.graph.relationship_sets == []
    assert [node.key for node in result.graph.nodes] == ["domain:never-seen.example.com"]


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("https://login.example.net/reset", "url:f668117678dcef5ef5e5c5bd9e521d3bdcdb7ca6005e51d4a6124b1ca2dfec97"),
        (IMPLANT_MD5, f"file:{IMPLANT}"),
    ],
)
async def test_a_url_or_md5_indicator_is_keyed_by_its_gti_id(
    standin: tuple[Backends, InProcessPool], value: str, key: str
) -> None:
    """GTI names URLs and files by their sha256: the indicator's node takes that id once its report comes
    back, while its relationship lists, asked for at the same time, still land on it."""
    _, pool = standin
    result = await pivot(Indicator.parse(value), in_process_sources(pool), 1)
    root = result.graph.nodes[0]
    assert (root.key, root.depth, root.expanded) == (key, 0, True)
    sets = [s for s in result.graph.relationship_sets if s.source == key]
    assert len(sets) == 6 and all(s.status == "ok" for s in sets)
    assert all(edge.source == key for edge in result.graph.edges if edge.target != key)
    assert result.direct_relationships.section.status is Status.OK and result.errors == []


@pytest.mark.parametrize(
    ("arguments", "fault", "status", "why"),
    [
        ({"budget": {"max_calls": 5}}, False, "degraded", "the budget left no call for the indicator's associations"),
        ({"relationships": ["subdomains"]}, False, "degraded", "associations were not among the requested"),
        ({}, True, "unavailable", "the indicator's associations could not be read"),  # gti-mcp hides the 429
    ],
)
async def test_attribution_is_unknown_not_absent_when_the_associations_were_not_read(
    standin: tuple[Backends, InProcessPool], arguments: dict[str, Any], fault: bool, status: str, why: str
) -> None:
    """Without the indicator's own associations, "no attribution" would be a claim the data cannot back."""
    backends, pool = standin
    if fault:
        backends.vt.inject(f"/domains/{DOMAIN}/associations", vt_error(429, "QuotaExceededError", "Quota exceeded"))
    result = await pivot(Indicator.parse(DOMAIN), in_process_sources(pool), 1, **arguments)
    section = result.campaign_context.section
    assert (section.status.value, result.campaign_context.threat_actor) == (status, None)
    assert section.reason and section.reason.startswith(why) and "attribution unknown, not absent" in section.reason
    assert section.null_fields["threat_actor"] == section.reason
    assert result.confidence_assessment.attribution_confidence.reasons == [section.reason]
    assert f"Attribution unknown: {why}" in result.summary and "No attribution" not in result.summary


async def test_c26_quota_between_the_report_and_a_relationship_call(standin: tuple[Backends, InProcessPool]) -> None:
    """C26: the quota runs out between the main report and a relationship call. The report is kept, the
    relationship set is marked incomplete, and the error says what it may be and what to do; on the report
    itself, VirusTotal's QuotaExceededError is named with HTTP 429 and the same hint."""
    backends, pool = standin
    backends.vt.inject(f"/domains/{DOMAIN}/resolutions", vt_error(429, "QuotaExceededError", "Quota exceeded"))
    result = await pivot(Indicator.parse(DOMAIN), in_process_sources(pool), 1)
    root = result.graph.nodes[0]
    assert (root.verdict, root.threat_score) == ("malicious", 87)  # the main report, fetched first, is kept
    failed = next(s for s in result.graph.relationship_sets if s.relationship == "resolutions")
    assert failed.possibly_truncated and "incomplete" in (failed.truncation_reason or "")
    [error] = result.errors
    assert error.status is Status.UNAVAILABLE and "a 429 quota" in error.message
    assert "retry later (VirusTotal sends no Retry-After)" in error.message and "requests_per_minute" in error.message
    assert len(result.direct_relationships.related_files) == 4  # the other relationships stand

    status, reason = classify_api_error("QuotaExceededError", "Quota exceeded")
    assert status is Status.RATE_LIMITED
    assert reason.startswith("rate limited: QuotaExceededError (HTTP 429); retry later")


async def test_c28_paging_follows_the_cursor(standin: tuple[Backends, InProcessPool]) -> None:
    """C28: page 2 is asked for with the cursor page 1 returned, it differs from page 1, and paging ends
    when no cursor comes back."""
    backends, pool = standin
    result = await pivot(Indicator.parse(DOMAIN), in_process_sources(pool), 1, ["resolutions"])
    pages = [r for r in backends.vt.requests if r.path.endswith("/resolutions")]
    assert len(pages) == 2
    assert "cursor" not in pages[0].params and pages[1].params.get("cursor")
    ips = [item.value for item in result.direct_relationships.related_ips]
    assert len(ips) == len(set(ips)) == 14  # 10 from page 1, 4 different ones from page 2


async def test_a_429_on_one_relationship_keeps_the_rest(standin: tuple[Backends, InProcessPool]) -> None:
    backends, pool = standin
    backends.vt.inject(f"/domains/{DOMAIN}/communicating_files", vt_error(429, "QuotaExceededError", "Quota exceeded"))
    result = await pivot(Indicator.parse(DOMAIN), in_process_sources(pool), 1)
    sets = {s.relationship: s for s in result.graph.relationship_sets}
    failed = sets["communicating_files"]
    assert failed.status == "unavailable" and failed.possibly_truncated and "incomplete" in failed.truncation_reason
    assert all(s.status == "ok" for name, s in sets.items() if name != "communicating_files")
    assert result.direct_relationships.section.status is Status.DEGRADED
    assert len(result.direct_relationships.related_ips) == 14
    assert len(result.direct_relationships.related_files) == 1  # the payload, from downloaded_files
    assert result.campaign_context.threat_actor == "TA-EXAMPLE-07"
    assert [e.status for e in result.errors] == [Status.UNAVAILABLE]


async def test_identical_concurrent_pivots_share_calls(standin: tuple[Backends, InProcessPool]) -> None:
    _, pool = standin
    single = await pivot(Indicator.parse(DOMAIN), in_process_sources(pool), 2)
    alone = len(pool.calls)
    assert alone == single.budget.calls == 62
    distinct_entities = {
        (tool, args.get("domain") or args.get("ip_address") or args.get("hash") or args.get("url") or args.get("id"))
        for tool, args in pool.calls
        if not tool.startswith("get_entities_related")
    }
    assert distinct_entities == {("get_domain_report", DOMAIN), ("get_ip_address_report", CDN)}  # each once
    pool.calls.clear()
    sources = in_process_sources(pool)
    results: list[Any] = []

    async def one() -> None:
        results.append(await pivot(Indicator.parse(DOMAIN), sources, 2))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    assert len(pool.calls) == alone  # every identical call in flight was made once
    assert sorted(r.budget.shared_calls for r in results)[-1] > 0
    assert [len(r.graph.nodes) for r in results] == [50, 50]


# --------------------------------------------------------------------------------------------------
# Pure parts


def test_relationship_sets() -> None:
    assert resolve_relationships(None)["ip"] == (
        "resolutions",
        "communicating_files",
        "downloaded_files",
        "urls",
        "associations",
    )
    chosen = resolve_relationships(["resolutions", "contacted_ips"])
    assert (
        chosen["domain"] == ("resolutions",)
        and chosen["file"] == ("contacted_ips",)
        and chosen["url"] == ("contacted_ips",)
    )
    assert resolve_relationships({"file": ["dropped_files"]})["file"] == ("dropped_files",)
    for bad in (["nope"], {"url": ["subdomains"]}, {"thing": ["urls"]}, []):
        with pytest.raises(PivotArgumentError):
            resolve_relationships(bad)  # type: ignore[arg-type]


def test_related_error_classification() -> None:
    assert classify_related_error("Error executing tool x: ('QuotaExceededError', 'q')")[0] is Status.RATE_LIMITED
    assert classify_related_error("NotFoundError: nope")[0] is Status.NOT_FOUND
    status, reason = classify_related_error("Error executing tool x: unhandled errors in a TaskGroup (1 sub-exception)")
    assert status is Status.UNAVAILABLE and "does not say why" in reason


def test_pivot_formulas() -> None:
    assert scoring.is_hub_fanout(20, 20, "clean") and not scoring.is_hub_fanout(20, 20, "malicious")
    assert scoring.is_hub_fanout(100, 150, "malicious") and not scoring.is_hub_fanout(5, 20, None)
    assert scoring.attribution_confidence(0, False, False)[:2] == (0, "none")
    assert scoring.attribution_confidence(1, True, False)[0] == 50
    assert scoring.attribution_confidence(3, True, False)[0] == 80
    assert scoring.attribution_confidence(9, False, True)[0] == 65  # capped at 85, minus 20 for ambiguity
    assert scoring.infrastructure_overlap(2, 8) == 25 and scoring.infrastructure_overlap(0, 0) == 0
    assert scoring.timeline_span([1746187200, 1744891200, 0]) == ("2025-04-17", "2025-05-02", 15)
    assert scoring.timeline_span([]) is None
    assert scoring.evidence_verdict("clean", "0 of 94 engines flag it") is None
    assert scoring.evidence_verdict("clean", "gti_assessment.verdict") == "clean"
    score, level, reasons = scoring.relationship_confidence(3, 4, ["malicious", "clean", None], True, True)
    assert (score, level) == (48, "medium") and len(reasons) == 4  # 37.5 + 25 - 10 - 5
    assert scoring.infrastructure_confidence(["malicious", "suspicious"], 1)[0] == 65
    assert scoring.infrastructure_confidence([None], 0)[:2] == (0, "none")
    assert scoring.expansion_priority("malicious", 90) < scoring.expansion_priority("suspicious", 99)
    assert scoring.expansion_priority(None, None) < scoring.expansion_priority("clean", 0)


def test_cli_analyze_pivot() -> None:
    import json
    import subprocess

    proc = subprocess.run(
        [console_script(), "analyze", DOMAIN, "--workflow", "pivot", "--depth", "2"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["workflow"] == "pivot" and data["pivot_depth"] == 2
    assert (len(data["graph"]["nodes"]), len(data["graph"]["edges"])) == (50, 63)
    assert "DATA MODE offline-fixtures" in proc.stderr
