"""The in-process backend emulation over fixtures/: statuses, envelopes, paging, aliases, SOAR time shift."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from ioc_workflows_mcp.offline.backend import (
    Backends,
    Request,
    default_fixtures_dir,
    google_error,
    soar_error,
    url_id,
    vt_error,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
C2 = "secure-update.example.net"
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"
EICAR_SHA1 = "3395856ce81f2b7382dee72602f798b642f14140"
REPORT = {"exclude_attributes": "last_analysis_results", "relationships": "associations"}
CASES = "/api/1p/external/v1/cases"


@pytest.fixture(scope="module")
def shared() -> Backends:
    return Backends.load(now=NOW)


@pytest.fixture
def b(shared: Backends) -> Backends:
    shared.clear()
    yield shared
    shared.clear()


def walk(api, path: str, params: dict[str, str] | None = None) -> list[dict]:
    """Follow meta.cursor like vt-py does, checking the paging invariants on the way."""
    params = dict(params or {})
    items: list[dict] = []
    for _ in range(1000):
        r = api.get(path, params)
        assert r.status == 200, r.body
        assert isinstance(r.body["data"], list)
        cursor = r.body.get("meta", {}).get("cursor")
        if cursor:
            assert r.body["data"], "a cursor must never come with empty data"
            assert "next" in r.body["links"]
        items.extend(r.body["data"])
        if not cursor:
            assert "next" not in r.body["links"]
            return items
        params["cursor"] = cursor
    raise AssertionError("paging did not end")


# ---------------------------------------------------------------------------------------------------
# VirusTotal


def test_default_fixtures_dir_points_at_repo_fixtures() -> None:
    assert (default_fixtures_dir() / "vt" / "domains").is_dir()


def test_domain_report_found_with_associations_and_excluded_attributes(b: Backends) -> None:
    r = b.vt.get(f"/domains/{C2}", REPORT)
    assert (r.status, r.content_type) == (200, "application/json")
    data = r.body["data"]
    assert (data["type"], data["id"]) == ("domain", C2)
    attrs = data["attributes"]
    assert "last_analysis_results" not in attrs
    assert attrs["gti_assessment"]["verdict"]["value"] == "VERDICT_MALICIOUS"
    assert attrs["gti_assessment"]["threat_score"]["value"] == 87
    assert attrs["last_analysis_stats"]["malicious"] == 14
    assert attrs["reputation"] == -42
    assoc = data["relationships"]["associations"]
    assert {d["id"].split("--")[0] for d in assoc["data"]} == {"malware", "threat-actor", "campaign"}
    assert all(set(d) >= {"type", "id"} and "attributes" not in d for d in assoc["data"])
    # without the parameters: full attributes, no relationships
    plain = b.vt.get(f"/domains/{C2}", {}).body["data"]
    assert "last_analysis_results" in plain["attributes"] and "relationships" not in plain


def test_not_found_envelopes(b: Backends) -> None:
    r = b.vt.get("/domains/nope.example", REPORT)
    assert r.status == 404
    assert r.body == {"error": {"code": "NotFoundError", "message": 'Domain "nope.example" not found'}}
    assert b.vt.get("/domains/intranet-sync.example.org", REPORT).status == 404  # SIEM-only indicator
    unknown = "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82"
    r = b.vt.get(f"/files/{unknown}", {})
    assert r.status == 404 and r.body["error"]["code"] == "NotFoundError" and unknown in r.body["error"]["message"]
    assert b.vt.get(f"/files/{unknown}/relationship/contacted_domains", {}).status == 404
    assert b.vt.get("/ip_addresses/10.20.30.40", {}).status == 404
    assert b.vt.get("/nonsense/route", {}).status == 404


def test_injected_vt_errors_then_clear(b: Backends) -> None:
    b.vt.inject("/", vt_error(401, "WrongCredentialsError", "Wrong API key"))
    r = b.vt.get(f"/domains/{C2}", REPORT)
    assert r.status == 401 and r.body["error"]["code"] == "WrongCredentialsError"
    b.vt.clear()
    b.vt.inject("/domains/", vt_error(429, "QuotaExceededError", "Quota exceeded"), times=1)
    assert b.vt.get(f"/domains/{C2}", {}).status == 429
    assert b.vt.get(f"/domains/{C2}", {}).status == 200  # one-shot
    b.vt.inject(lambda req: req.path.startswith("/files/"), vt_error(403, "ForbiddenError", "nope"))
    assert b.vt.get(f"/files/{EICAR_MD5}", {}).status == 403
    assert b.vt.get(f"/domains/{C2}", {}).status == 200
    assert [req.path for req in b.vt.requests][-2:] == [f"/files/{EICAR_MD5}", f"/domains/{C2}"]


@pytest.mark.parametrize("h", [EICAR_SHA256, EICAR_MD5, EICAR_SHA1, EICAR_SHA1.upper()])
def test_file_hash_aliases(b: Backends, h: str) -> None:
    r = b.vt.get(f"/files/{h}", REPORT)
    assert r.status == 200
    data = r.body["data"]
    assert data["id"] == EICAR_SHA256
    assert data["attributes"]["popular_threat_classification"]["popular_threat_name"][0]["value"] == "eicar"
    assert set(data["relationships"]) == {"associations"}


def test_empty_file_md5_is_harmless(b: Backends) -> None:
    attrs = b.vt.get("/files/d41d8cd98f00b204e9800998ecf8427e", {}).body["data"]["attributes"]
    assert attrs["last_analysis_stats"]["malicious"] == 0
    assert attrs["gti_assessment"]["verdict"]["value"] == "VERDICT_BENIGN"


def test_file_report_embeds_every_requested_relationship(b: Backends) -> None:
    rels = "contacted_domains,contacted_ips,contacted_urls,dropped_files,embedded_domains,associations"
    dropper = hashlib.sha256(b"ioc-workflows-mcp fixture: SecureUpdate_Setup.exe dropper").hexdigest()
    data = b.vt.get(f"/files/{dropper}", {"relationships": rels}).body["data"]
    assert set(data["relationships"]) == set(rels.split(","))
    assert data["relationships"]["embedded_domains"]["data"] == []
    assert {d["id"] for d in data["relationships"]["contacted_domains"]["data"]} == {
        C2,
        "example.com",
        "relay.secure-update.example.org",
        "share.example.org",
    }


def test_url_ids_base64_and_sha256(b: Backends) -> None:
    url = "https://login.example.net/reset"
    b64 = url_id(url)
    assert "=" not in b64 and b64 == base64.b64encode(url.encode()).decode().rstrip("=")
    by_b64 = b.vt.get(f"/urls/{b64}", REPORT)
    by_sha = b.vt.get(f"/urls/{hashlib.sha256(url.encode()).hexdigest()}", REPORT)
    assert by_b64.status == by_sha.status == 200
    assert by_b64.body["data"]["id"] == hashlib.sha256(url.encode()).hexdigest() == by_sha.body["data"]["id"]
    assert by_b64.body["data"]["attributes"]["gti_assessment"]["verdict"]["value"] == "VERDICT_MALICIOUS"
    loc = b.vt.get(f"/urls/{b64}/relationship/network_location", {}).body["data"]
    assert loc == [{"type": "domain", "id": "login.example.net"}]
    r = b.vt.get(f"/urls/{url_id('https://nope.example/x')}", {})
    assert r.status == 404 and r.body["error"]["message"].startswith('URL "')


def test_url_id_containing_slash_routes() -> None:
    # standard (not URL-safe) base64 may contain "/": the router must still split id and relationship
    from ioc_workflows_mcp.offline.backend import VirusTotalAPI

    url = "https://odd.example/???"
    b64 = url_id(url)
    assert "/" in b64
    api = VirusTotalAPI()
    sha = hashlib.sha256(url.encode()).hexdigest()
    api.add_object("urls", {"type": "url", "id": sha, "attributes": {"url": url}})
    assert api.get(f"/urls/{b64}", {}).body["data"]["id"] == sha
    r = api.get(f"/urls/{b64}/relationships/downloaded_files", {})
    assert r.status == 200 and r.body["data"] == []
    assert api.get(f"/urls/{b64}/network_location", {}).status == 200


@pytest.mark.parametrize("segment", ["relationship", "relationships"])
def test_descriptors_singular_and_plural_and_full_objects(b: Backends, segment: str) -> None:
    desc = b.vt.get(f"/domains/{C2}/{segment}/resolutions", {})
    full = b.vt.get(f"/domains/{C2}/resolutions", {})
    assert desc.status == full.status == 200
    assert all(set(d) == {"type", "id"} for d in desc.body["data"])
    assert desc.body["data"][0] == {"type": "resolution", "id": f"203.0.113.66{C2}"}
    assert full.body["data"][0]["attributes"]["ip_address"] == "203.0.113.66"
    assert [d["id"] for d in desc.body["data"]] == [o["id"] for o in full.body["data"]]


def test_resolutions_page_two_differs_and_last_page_has_no_cursor(b: Backends) -> None:
    first = b.vt.get(f"/domains/{C2}/relationship/resolutions", {})
    assert len(first.body["data"]) == 10 and first.body["meta"]["cursor"]
    second = b.vt.get(f"/domains/{C2}/relationship/resolutions", {"cursor": first.body["meta"]["cursor"]})
    assert second.status == 200
    assert "cursor" not in second.body["meta"]
    assert {d["id"] for d in first.body["data"]}.isdisjoint({d["id"] for d in second.body["data"]})
    ips = {d["id"].removesuffix(C2) for d in walk(b.vt, f"/domains/{C2}/relationship/resolutions")}
    assert {"203.0.113.66", "198.51.100.7", "104.18.32.7"} <= ips and len(ips) == 14


def test_subdomains_exactly_100_then_no_cursor(b: Backends) -> None:
    items = walk(b.vt, f"/domains/{C2}/relationship/subdomains", {"limit": "40"})
    assert len(items) == 100 and len({i["id"] for i in items}) == 100


def test_exact_multiple_of_page_size_never_ends_with_empty_page(b: Backends) -> None:
    # 100 subdomains at page size 10: the 10th page is full and must carry no cursor
    items = walk(b.vt, f"/domains/{C2}/subdomains")
    assert len(items) == 100 and all(i["type"] == "domain" and "attributes" in i for i in items)


def test_example_com_synthetic_communicating_files(b: Backends) -> None:
    path = "/domains/example.com/relationship/communicating_files"
    first = b.vt.get(path, {"limit": "40"})
    assert first.body["meta"]["count"] == 5000 and len(first.body["data"]) == 40
    again = b.vt.get(path, {"limit": "40"})
    assert first.body == again.body  # deterministic
    last = b.vt.get(path, {"limit": "40", "cursor": _cursor_at(b, path, 4960)})
    assert len(last.body["data"]) == 40 and "cursor" not in last.body["meta"]
    full = b.vt.get("/domains/example.com/communicating_files", {}).body["data"][0]
    assert full["type"] == "file" and len(full["id"]) == 64 and full["attributes"]["sha256"] == full["id"]
    resolutions = walk(b.vt, "/domains/example.com/relationship/resolutions")
    assert len(resolutions) == 32


def _cursor_at(b: Backends, path: str, offset: int) -> str:
    """Walk to ``offset`` (multiple of 40) and return the cursor that points there."""
    params = {"limit": "40"}
    for _ in range(offset // 40):
        params["cursor"] = b.vt.get(path, params).body["meta"]["cursor"]
    return params["cursor"]


def test_bad_cursor_is_400(b: Backends) -> None:
    r = b.vt.get(f"/domains/{C2}/relationship/resolutions", {"cursor": "!!"})
    assert r.status == 400 and r.body["error"]["code"] == "InvalidArgumentError"


def test_collection_report_and_aggregations(b: Backends) -> None:
    assoc = b.vt.get(f"/domains/{C2}", REPORT).body["data"]["relationships"]["associations"]["data"]
    actor = next(d["id"] for d in assoc if d["id"].startswith("threat-actor--"))
    r = b.vt.get(f"/collections/{actor}", {"exclude_attributes": "aggregations", "relationships": "associations"})
    attrs = r.body["data"]["attributes"]
    assert attrs["collection_type"] == "threat-actor" and "aggregations" not in attrs
    only = b.vt.get(f"/collections/{actor}", {"attributes": "aggregations"}).body["data"]["attributes"]
    assert set(only) == {"aggregations"}
    full = b.vt.get(f"/domains/{C2}/associations", {}).body["data"]
    assert {o["attributes"]["collection_type"] for o in full} == {"malware-family", "threat-actor", "campaign"}


def test_hub_ips_and_clean_domain(b: Backends) -> None:
    assert len(walk(b.vt, "/ip_addresses/8.8.8.8/relationship/resolutions")) == 25
    v6 = b.vt.get("/ip_addresses/2606:4700:4700::1111", REPORT)
    assert v6.status == 200 and v6.body["data"]["attributes"]["asn"] == 13335
    assert len(walk(b.vt, "/ip_addresses/2606:4700:4700::1111/relationships/resolutions")) == 12
    docs = b.vt.get("/domains/docs.example.org", REPORT).body["data"]["attributes"]
    assert docs["last_analysis_stats"]["malicious"] == 0
    assert docs["gti_assessment"]["verdict"]["value"] == "VERDICT_UNDETECTED"
    login = b.vt.get("/domains/login.example.net", REPORT).body["data"]["attributes"]
    assert login["gti_assessment"]["verdict"]["value"] == "VERDICT_SUSPICIOUS"
    assert b.vt.get("/ip_addresses/203.0.113.66", REPORT).status == 200


def test_unrecorded_relationship_of_known_object_is_empty(b: Backends) -> None:
    r = b.vt.get(f"/domains/{C2}/relationship/historical_whois", {})
    assert r.status == 200 and r.body["data"] == [] and "cursor" not in r.body["meta"]


# ---------------------------------------------------------------------------------------------------
# Chronicle


@pytest.mark.parametrize(
    ("query", "etype"),
    [
        (f'domain = "{C2}"', "DOMAIN_NAME"),
        ('ip = "10.20.30.40"', "ASSET"),
        (f'hash = "{EICAR_MD5}"', "FILE"),
        (f'hash = "{EICAR_SHA256.upper()}"', "FILE"),
        ('domain = "intranet-sync.example.org"', "DOMAIN_NAME"),
        ('ip = "203.0.113.66"', "IP_ADDRESS"),
    ],
)
def test_summarize_entities_from_query(b: Backends, query: str, etype: str) -> None:
    r = b.chronicle.get(":summarizeEntitiesFromQuery", {"query": query})
    assert r.status == 200
    assert r.body["entitySummaries"][0]["entity"][0]["metadata"]["entityType"] == etype


def test_summarize_unknown_is_empty_and_entity_variants(b: Backends) -> None:
    unknown = "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82"
    assert b.chronicle.get(":summarizeEntitiesFromQuery", {"query": f'hash = "{unknown}"'}).body == {}
    summary = b.chronicle.get(":summarizeEntitiesFromQuery", {"query": f'domain = "{C2}"'}).body
    entity_id = summary["entitySummaries"][0]["entity"][0]["name"].rsplit("/", 1)[-1]
    alerts = b.chronicle.get(
        ":summarizeEntity", {"entityId": entity_id, "returnAlerts": "True", "returnPrevalence": "False"}
    )
    assert alerts.status == 200 and alerts.body["alertCounts"][0]["rule"] == "outbound_c2_beacon"
    prev = b.chronicle.get(
        ":summarizeEntity", {"entityId": entity_id, "returnAlerts": "False", "returnPrevalence": "True"}
    )
    assert prev.status == 200 and prev.body["prevalenceResult"]
    ghost = b.chronicle.get(":summarizeEntity", {"entityId": "nope", "returnPrevalence": "True"})
    assert ghost.status == 200 and ghost.body["prevalenceResult"] == []  # prevalence always 200
    assert b.chronicle.get(":summarizeEntity", {"entityId": "nope", "returnAlerts": "True"}).status == 404


def test_ioc_matches_all_and_alerts_view(b: Backends) -> None:
    matches = b.chronicle.get("/legacy:legacySearchEnterpriseWideIoCs", {"maxMatchesToReturn": "20"}).body
    kinds = {next(iter(m["artifactIndicator"].items())) for m in matches["matches"]}
    assert ("domain", C2) in kinds and ("destinationIpAddress", "203.0.113.66") in kinds
    assert ("hashSha256", EICAR_SHA256) in kinds
    assert all(isinstance(s, str) for m in matches["matches"] for s in m["sources"])
    assert matches["moreDataAvailable"] is False
    two = b.chronicle.get("/legacy:legacySearchEnterpriseWideIoCs", {"maxMatchesToReturn": "2"}).body
    assert len(two["matches"]) == 2 and two["moreDataAvailable"] is True
    view = b.chronicle.get(
        "/legacy:legacyFetchAlertsView", {"snapshotQuery": 'feedback_summary.status != "CLOSED"'}
    ).body
    assert view["complete"] is True
    assert view["alerts"]["alerts"] and all(
        a["feedbackSummary"]["status"] != "CLOSED" for a in view["alerts"]["alerts"]
    )
    everything = b.chronicle.get("/legacy:legacyFetchAlertsView", {}).body["alerts"]["alerts"]
    assert len(everything) > len(view["alerts"]["alerts"])


def test_udm_search_matches_quoted_literals_case_insensitively(b: Backends) -> None:
    r = b.chronicle.get(":udmSearch", {"query": 'network.dns.questions.name = "SECURE-UPDATE.example.NET"'})
    hosts = {e["udm"]["principal"]["hostname"] for e in r.body["events"]}
    assert hosts == {"wks-014", "wks-022", "srv-app-03"}
    assert r.body["moreDataAvailable"] is False
    either = b.chronicle.get(":udmSearch", {"query": 'principal.ip = "10.20.30.40" OR target.ip = "nothing"'})
    assert either.body["events"] and all("10.20.30.40" in str(e) for e in either.body["events"])
    assert b.chronicle.get(":udmSearch", {"query": 'target.ip = "192.0.2.250"'}).body["events"] == []
    limited = b.chronicle.get(":udmSearch", {"query": f'"{C2}"', "limit": "2"}).body
    assert len(limited["events"]) == 2 and limited["moreDataAvailable"] is True
    assert b.chronicle.get(":udmSearch", {"query": 'x = "unbalanced'}).status == 400


def test_translate_is_deterministic(b: Backends) -> None:
    body = {"text": f"show DNS lookups of {C2} last week"}
    one = b.chronicle.post(":translateUdmQuery", {}, body).body
    assert one == b.chronicle.post(":translateUdmQuery", {}, body).body
    assert C2 in one["query"]
    assert "message" in b.chronicle.post(":translateUdmQuery", {}, {"text": "hello there"}).body


def test_chronicle_injected_permission_denied_and_unknown_route(b: Backends) -> None:
    b.chronicle.inject(":summarizeEntitiesFromQuery", google_error(403, "Permission denied on instance"))
    r = b.chronicle.get(":summarizeEntitiesFromQuery", {"query": f'domain = "{C2}"'})
    assert r.status == 403 and r.body["error"]["status"] == "PERMISSION_DENIED"
    assert b.chronicle.get(":nope", {}).status == 404


# ---------------------------------------------------------------------------------------------------
# SOAR


def test_scopes_list(b: Backends) -> None:
    r = b.soar.request("GET", "/api/external/v1/settings/GetScopes", {})
    assert r.status == 200 and isinstance(r.body, list) and r.content_type == "application/json"


def all_cases(b: Backends) -> list[dict]:
    out, params = [], {}
    while True:
        body = b.soar.request("GET", CASES, params).body
        out.extend(body["cases"])
        if not body["nextPageToken"]:
            return out
        params = {"$expand": "tags", "pageToken": body["nextPageToken"]}


def test_list_cases_paging_newest_first(b: Backends) -> None:
    first = b.soar.request("GET", CASES, {}).body
    assert len(first["cases"]) == 50 and first["nextPageToken"] and first["totalSize"] >= 250
    second = b.soar.request("GET", CASES, {"pageToken": first["nextPageToken"]}).body
    assert {c["id"] for c in first["cases"]}.isdisjoint({c["id"] for c in second["cases"]})
    cases = all_cases(b)
    assert len(cases) == first["totalSize"] and len({c["id"] for c in cases}) == len(cases)
    times = [c["createTime"] for c in cases]
    assert times == sorted(times, reverse=True)
    assert {c["status"] for c in cases} == {"Opened", "Closed"}
    assert len({c["environment"] for c in cases}) >= 3 and len({c["assignee"] for c in cases}) >= 3
    assert b.soar.request("GET", CASES, {"pageToken": "garbage"}).status == 400


def test_soar_time_shift(shared: Backends) -> None:
    later = Backends.load(now=NOW + timedelta(days=10))
    a = shared.soar.request("GET", CASES, {}).body["cases"][0]
    c = later.soar.request("GET", CASES, {}).body["cases"][0]
    assert a["id"] == c["id"]
    delta = datetime.fromisoformat(c["createTime"].replace("Z", "+00:00")) - datetime.fromisoformat(
        a["createTime"].replace("Z", "+00:00")
    )
    assert delta == timedelta(days=10)
    created = [datetime.fromisoformat(x["createTime"].replace("Z", "+00:00")) for x in all_cases_of(shared)]
    assert max(created) <= NOW and min(created) >= NOW - timedelta(days=366)
    assert sum(1 for t in created if t >= NOW - timedelta(days=30)) >= 10


def all_cases_of(backends: Backends) -> list[dict]:
    return all_cases(backends)


def test_case_details_alerts_comments_entities(b: Backends) -> None:
    case = next(c for c in all_cases(b) if c["displayName"] == "Outbound C2 beacon from WKS-014")
    cid = str(case["id"])
    detail = b.soar.request("GET", f"{CASES}/{cid}", {})
    assert detail.status == 200 and "description" in detail.body
    alerts = b.soar.request("GET", f"/api/1p/external/v1.0/cases/{cid}/caseAlerts", {}).body
    assert alerts["totalSize"] == 2 and alerts["caseAlerts"][0]["caseId"] == case["id"]
    groups = b.soar.request(
        "GET", f"/api/1p/external/v1.0/cases/{cid}/caseAlerts", {"$select": "alertGroupIdentifier"}
    ).body["caseAlerts"]
    assert all(set(g) == {"alertGroupIdentifier"} for g in groups)
    ents = b.soar.request(
        "POST",
        "/api/external/v1/case-overview/GetAlertsEntities",
        {},
        {"caseId": cid, "alertGroupIdentifiers": [g["alertGroupIdentifier"] for g in groups]},
    ).body
    identifiers = {e["identifier"] for g in ents for e in g["entities"]}
    assert "SECURE-UPDATE.EXAMPLE.NET" in identifiers
    comments = b.soar.request("GET", f"{CASES}/{cid}/comments", {}).body
    assert comments["totalSize"] == 2
    events = b.soar.request(
        "GET", f"/api/1p/external/v1.0/cases/{cid}/alerts/{alerts['caseAlerts'][0]['id']}/involvedEvents", {}
    )
    assert events.status == 200 and events.body["involvedEvents"]
    assert b.soar.request("GET", f"{CASES}/999999", {}).status == 404


def test_defanged_only_case_and_casing(b: Backends) -> None:
    cases = all_cases(b)
    defanged = [c for c in cases if "secure-update[.]example[.]net" in c["displayName"]]
    assert len(defanged) == 1
    search = b.soar.request(
        "POST", "/api/external/v1.0/entity-search/entities", {}, {"Term": C2, "Type": None, "IsSuspicious": None}
    ).body
    identifiers = {o["identifier"] for o in search["objectsList"]}
    # one entity per (identifier case-insensitively, type, environment): the lower-cased sighting merges
    assert {"SECURE-UPDATE.EXAMPLE.NET", "Secure-Update.Example.Net"} <= identifiers
    merged = next(o for o in search["objectsList"] if o["identifier"] == "SECURE-UPDATE.EXAMPLE.NET")
    assert merged["type"] == "DOMAIN" and merged["casesCount"] == 3
    assert search["metadata"]["totalRecordsCount"] == len(search["objectsList"])
    assert all(C2 in i.lower() for i in identifiers)
    hashes = b.soar.request(
        "POST", "/api/external/v1.0/entity-search/entities", {}, {"Term": EICAR_SHA256, "Type": ["FILEHASH"]}
    ).body["objectsList"]
    assert [h["identifier"] for h in hashes] == [EICAR_SHA256.upper()]


def test_entity_data(b: Backends) -> None:
    body = {
        "EntityIdentifier": "10.20.30.40",
        "EntityType": "ADDRESS",
        "EntityEnvironment": "Finance",
        "LastCaseType": 0,
        "CaseDistributionType": 0,
    }
    r = b.soar.request("POST", "/api/external/v1/entities/GetEntityData", {}, body)
    assert r.status == 200 and r.body["casesCount"] >= 3 and r.body["isInternalAsset"] is True
    body["EntityIdentifier"] = "192.0.2.254"
    assert b.soar.request("POST", "/api/external/v1/entities/GetEntityData", {}, body).status == 404


def test_soar_injected_401_and_unknown_route(b: Backends) -> None:
    b.soar.inject(lambda req: isinstance(req, Request), soar_error(401, "Unauthorized"))
    assert b.soar.request("GET", "/api/external/v1/settings/GetScopes", {}).status == 401
    b.soar.clear()
    assert b.soar.request("GET", "/api/external/v1/nope", {}).status == 404
    assert b.soar.request("GET", "/api/1p/external/v1/nope/x", {}).body["error"]["code"] == 404


def test_soar_writes_stay_in_instance() -> None:
    own = Backends.load(now=NOW)
    cid = str(own.soar.request("GET", CASES, {}).body["cases"][0]["id"])
    posted = own.soar.request("POST", f"{CASES}/{cid}/comments", {}, {"Comment": "checked by test"})
    assert posted.status == 200
    texts = [c["comment"] for c in own.soar.request("GET", f"{CASES}/{cid}/comments", {}).body["caseComments"]]
    assert texts[-1] == "checked by test"
    patched = own.soar.request("PATCH", f"{CASES}/{cid}", {}, {"Priority": "PriorityCritical"})
    assert patched.body["priority"] == "PriorityCritical"
    fresh = Backends.load(now=NOW)
    assert "checked by test" not in str(fresh.soar.request("GET", f"{CASES}/{cid}/comments", {}).body)
