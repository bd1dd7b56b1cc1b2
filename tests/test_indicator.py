"""Unit tests of ioc_workflows_mcp.indicator: hints, policy flags, benign list, URLs, fuzzing."""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioc_workflows_mcp.indicator import (
    MAX_INPUT_LENGTH,
    Indicator,
    IndicatorError,
    IndicatorType,
    is_benign_infrastructure,
    known_benign_reason,
    normalize_type_hint,
    parse_indicator,
)


def _error(value: object, hint: str | None = None) -> IndicatorError:
    with pytest.raises(IndicatorError) as info:
        parse_indicator(value, hint)
    return info.value


# Type hints ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("IP Address", "ip"),
        ("ip", "ip"),
        ("ip_address", "ip"),
        ("IPv4", IndicatorType.IPV4),
        ("ipv6", IndicatorType.IPV6),
        ("Domain", IndicatorType.DOMAIN),
        ("hostname", IndicatorType.DOMAIN),
        ("FQDN", IndicatorType.DOMAIN),
        ("Domain Name", IndicatorType.DOMAIN),
        ("URL", IndicatorType.URL),
        ("uri", IndicatorType.URL),
        ("File Hash", "hash"),
        ("file_hash", "hash"),
        ("Hash", "hash"),
        ("file", "hash"),
        ("MD5", IndicatorType.MD5),
        ("sha1", IndicatorType.SHA1),
        ("SHA-1", IndicatorType.SHA1),
        ("sha256", IndicatorType.SHA256),
        ("SHA-256", IndicatorType.SHA256),
        ("sha_256", IndicatorType.SHA256),
        (" ip  address ", "ip"),
        (None, None),
        ("", None),
        ("auto", None),
        (IndicatorType.URL, IndicatorType.URL),
    ],
)
def test_normalize_type_hint(hint: str | None, expected: object) -> None:
    assert normalize_type_hint(hint) == expected


@pytest.mark.parametrize("hint", ["filename", "File Name", "file-name", "FILE_NAME"])
def test_file_name_hint_is_unsupported(hint: str) -> None:
    with pytest.raises(IndicatorError) as info:
        normalize_type_hint(hint)
    assert info.value.reason == "unsupported_type"
    assert "file names are not a supported IOC type" in str(info.value)


@pytest.mark.parametrize("hint", ["email", "CIDR", "ssdeep", "sha512"])
def test_other_unsupported_hints(hint: str) -> None:
    with pytest.raises(IndicatorError) as info:
        normalize_type_hint(hint)
    assert info.value.reason == "unsupported_type"


def test_unknown_hint_lists_accepted_words() -> None:
    with pytest.raises(IndicatorError) as info:
        normalize_type_hint("registry key")
    assert info.value.reason == "invalid"
    for word in ("IP Address", "Domain", "File Hash", "URL", "sha256"):
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("value", "hint", "kind"),
    [
        ("198.51.100.1", "IP Address", IndicatorType.IPV4),
        ("2001:db8::1", "IP Address", IndicatorType.IPV6),
        ("198.51.100.1", "ipv4", IndicatorType.IPV4),
        ("example.com", "Domain", IndicatorType.DOMAIN),
        ("https://example.com/a", "URL", IndicatorType.URL),
        ("d41d8cd98f00b204e9800998ecf8427e", "File Hash", IndicatorType.MD5),
        ("da39a3ee5e6b4b0d3255bfef95601890afd80709", "hash", IndicatorType.SHA1),
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "file", IndicatorType.SHA256),
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha-256", IndicatorType.SHA256),
    ],
)
def test_hint_accepts_matching_value(value: str, hint: str, kind: IndicatorType) -> None:
    assert parse_indicator(value, hint).type is kind


@pytest.mark.parametrize(
    ("value", "hint", "looks"),
    [
        ("example.com", "IP Address", "domain"),
        ("198.51.100.1", "Domain", "ipv4"),
        ("2001:db8::1", "ipv4", "ipv6"),
        ("198.51.100.1", "ipv6", "ipv4"),
        ("https://example.com/a", "domain", "url"),
        ("example.com", "File Hash", "domain"),
        ("d41d8cd98f00b204e9800998ecf8427e", "sha256", "md5"),
        ("d41d8cd98f00b204e9800998ecf8427e", "domain", "md5"),
        ("d41d8cd98f00b204e9800998ecf8427e", "url", "md5"),
    ],
)
def test_hint_mismatch_says_what_it_looks_like(value: str, hint: str, looks: str) -> None:
    err = _error(value, hint)
    assert err.reason == "type_mismatch"
    assert looks in str(err)
    assert "ioc_type" in str(err)


def test_url_hint_never_turns_a_bare_host_into_a_url() -> None:
    """A host given as a URL is a mismatch, like every other: `http://host/` would be a different object."""
    for value, looks_like in (("example.com", "domain"), ("198.51.100.7:8080", "ipv4"), ("2001:db8::1", "ipv6")):
        err = _error(value, "URL")
        assert err.reason == "type_mismatch" and f"looks like {looks_like}" in str(err)
    assert parse_indicator("http://example.com/", "URL").value == "http://example.com/"


def test_hash_hint_with_bad_length() -> None:
    err = _error("d41d8cd98f00b204e9800998ecf8427", "File Hash")
    assert "31 hex characters" in str(err)


def test_parse_accepts_an_indicator() -> None:
    ind = parse_indicator("8.8.8.8")
    assert Indicator.parse(ind) is ind
    assert Indicator.parse(ind, "IP Address") is ind
    assert _error(ind, "domain").reason == "type_mismatch"


def test_family() -> None:
    assert parse_indicator("8.8.8.8").family == "ip"
    assert parse_indicator("2001:db8::1").family == "ip"
    assert parse_indicator("example.com").family == "domain"
    assert parse_indicator("http://example.com/").family == "url"
    assert parse_indicator("d41d8cd98f00b204e9800998ecf8427e").family == "file"
    assert {t.family for t in IndicatorType} == {"ip", "domain", "url", "file"}


def test_model_is_frozen_and_hashable() -> None:
    ind = parse_indicator("example.com")
    with pytest.raises(ValueError):
        ind.value = "other.example"  # type: ignore[misc]
    other = parse_indicator("EXAMPLE.com.")
    assert hash(ind) == hash(other)  # de-dup key is (type, value, port); raw differs, so != by fields
    assert len({ind, parse_indicator("example.com")}) == 1
    assert str(ind) == "example.com"


# Policy flags for special ranges ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        ("0.0.0.0", "unspecified (RFC 1122)"),
        ("0.1.2.3", "this network (RFC 791)"),
        ("10.0.0.1", "private (RFC 1918)"),
        ("172.31.255.255", "private (RFC 1918)"),
        ("192.168.0.1", "private (RFC 1918)"),
        ("100.127.0.1", "shared address space / CGNAT (RFC 6598)"),
        ("127.1.2.3", "loopback (RFC 1122)"),
        ("169.254.1.1", "link-local (RFC 3927)"),
        ("192.0.0.8", "IETF protocol assignments (RFC 6890)"),
        ("192.0.2.1", "documentation (RFC 5737)"),
        ("198.51.100.1", "documentation (RFC 5737)"),
        ("203.0.113.1", "documentation (RFC 5737)"),
        ("192.88.99.1", "6to4 relay anycast, deprecated (RFC 7526)"),
        ("198.18.0.1", "benchmarking (RFC 2544)"),
        ("198.19.255.1", "benchmarking (RFC 2544)"),
        ("224.0.0.251", "multicast (RFC 5771)"),
        ("239.255.255.250", "multicast (RFC 5771)"),
        ("240.0.0.1", "reserved (RFC 1112)"),
        ("255.255.255.255", "limited broadcast (RFC 919)"),
        ("::", "unspecified (RFC 4291)"),
        ("::1", "loopback (RFC 4291)"),
        ("::ffff:10.0.0.1", "IPv4-mapped (RFC 4291)"),
        ("64:ff9b:1::1", "local-use NAT64 (RFC 8215)"),
        ("100::1", "discard-only (RFC 6666)"),
        ("2001:db8:abcd::1", "documentation (RFC 3849)"),
        ("3fff::1", "documentation (RFC 9637)"),
        ("2001:2::1", "benchmarking (RFC 5180)"),
        ("2001:20::1", "ORCHIDv2 (RFC 7343)"),
        ("fc00::1", "unique local address / ULA (RFC 4193)"),
        ("fdff::1", "unique local address / ULA (RFC 4193)"),
        ("fe80::abcd", "link-local (RFC 4291)"),
        ("fec0::1", "site-local, deprecated (RFC 3879)"),
        ("ff02::1", "multicast (RFC 4291)"),
        ("4000::1", "reserved (outside 2000::/3 global unicast, RFC 4291)"),
    ],
)
def test_non_routable_ranges(value: str, flag: str) -> None:
    ind = parse_indicator(value)
    assert flag in ind.flags
    assert ind.external_ti_allowed is False
    assert ind.ti_skip_reason == f"non-routable: {flag}"


@pytest.mark.parametrize(
    ("value", "flag", "embedded"),
    [
        ("64:ff9b::c633:6401", "NAT64 well-known prefix (RFC 6052)", "198.51.100.1"),
        ("2002:c633:6401::1", "6to4 (RFC 3056)", "198.51.100.1"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo (RFC 4380)", "192.0.2.45"),
    ],
)
def test_routable_special_ranges_are_flagged_not_skipped(value: str, flag: str, embedded: str) -> None:
    ind = parse_indicator(value)
    assert flag in ind.flags
    assert ind.external_ti_allowed is True
    assert any(embedded in w for w in ind.warnings)


@pytest.mark.parametrize("value", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "1.2.3.4"])
def test_public_addresses_have_no_flags(value: str) -> None:
    ind = parse_indicator(value)
    assert ind.flags == []
    assert ind.external_ti_allowed is True


@pytest.mark.parametrize(
    ("value", "suffix", "ti"),
    [
        ("host.example", "example", False),
        ("a.b.test", "test", False),
        ("x.invalid", "invalid", False),
        ("app.localhost", "localhost", False),
        ("localhost", "localhost", False),
        ("printer.local", "local", False),
        ("nas.home.arpa", "home.arpa", False),
        ("db.internal", "internal", False),
        ("router.lan", "lan", False),
        ("srv.corp", "corp", False),
        ("x.alt", "alt", False),
        ("duskgytldkxiuqc6.onion", "onion", True),
    ],
)
def test_special_use_names(value: str, suffix: str, ti: bool) -> None:
    ind = parse_indicator(value)
    assert ind.type is IndicatorType.DOMAIN
    assert any(flag.startswith(f"special-use TLD `.{suffix}`") for flag in ind.flags)
    assert ind.external_ti_allowed is ti
    if not ti:
        assert ind.ti_skip_reason is not None and ind.ti_skip_reason.startswith("special-use:")


def test_example_com_is_an_ordinary_domain() -> None:
    for value in ("example.com", "example.net", "example.org"):
        ind = parse_indicator(value)
        assert ind.flags == []
        assert ind.known_benign is None
        assert ind.external_ti_allowed is True


def test_url_host_special_use_skips_ti() -> None:
    ind = parse_indicator("http://intranet.corp/login")
    assert ind.external_ti_allowed is False
    assert ind.ti_skip_reason is not None and ind.ti_skip_reason.startswith("special-use host:")


# Known benign / shared infrastructure -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "8.8.4.4",
        "1.0.0.1",
        "2606:4700:4700::1111",
        "2606:4700:4700::1001",
        "2001:4860:4860::8844",
        "149.112.112.112",
        "208.67.222.222",
        "208.67.220.220",
    ],
)
def test_public_resolvers_are_benign(value: str) -> None:
    ind = parse_indicator(value)
    assert ind.known_benign is not None and "public DNS resolver" in ind.known_benign
    assert ind.external_ti_allowed is True
    assert is_benign_infrastructure(ind) == ind.known_benign
    assert known_benign_reason(value) == ind.known_benign


@pytest.mark.parametrize(
    "value",
    ["google.com", "www.google.com", "update.microsoft.com", "x.windowsupdate.com", "cloudfront.net", "github.com"],
)
def test_benign_domains_match_subdomains(value: str) -> None:
    ind = parse_indicator(value)
    assert ind.known_benign is not None
    assert f"known benign: {ind.known_benign}" in ind.flags
    assert is_benign_infrastructure(value) == ind.known_benign


@pytest.mark.parametrize(
    "value",
    ["evil-bucket.s3.amazonaws.com", "d111111abcdef8.cloudfront.net", "raw.githubusercontent.com", "x.azureedge.net"],
)
def test_customer_names_on_shared_infrastructure_are_not_benign(value: str) -> None:
    ind = parse_indicator(value)
    assert ind.known_benign is None
    assert any("shared infrastructure" in flag for flag in ind.flags)
    assert known_benign_reason(value) is None


@pytest.mark.parametrize(
    "value", ["notgoogle.com", "google.com.evil.example", "3395856ce81f2b7382dee72602f798b642f14140"]
)
def test_lookalikes_are_not_benign(value: str) -> None:
    assert parse_indicator(value).known_benign is None
    assert known_benign_reason(value) is None


def test_url_on_benign_host_is_not_benign() -> None:
    ind = parse_indicator("https://github.com/someone/payload/raw/main/a.exe")
    assert ind.known_benign is None
    assert is_benign_infrastructure(ind) is None
    assert any(flag.startswith("host is known benign") for flag in ind.flags)


def test_known_benign_reason_quick_check() -> None:
    assert known_benign_reason("8.8.8.8") == "public DNS resolver (Google Public DNS)"
    assert known_benign_reason("2001:4860:4860:0::8888") == "public DNS resolver (Google Public DNS)"
    assert known_benign_reason("WWW.GOOGLE.COM.") == "popular site (Google)"
    assert known_benign_reason("D41D8CD98F00B204E9800998ECF8427E") == "MD5 of empty input"
    assert known_benign_reason("198.51.100.1") is None
    assert known_benign_reason("") is None
    assert known_benign_reason("not a domain at all") is None
    assert is_benign_infrastructure("not an ioc") is None


# URL normalization ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value", "port"),
    [
        ("HTTPS://Example.COM/Path?Q=A#Frag", "https://example.com/Path?Q=A#Frag", None),
        ("http://example.com:80/a", "http://example.com/a", None),
        ("https://example.com:443", "https://example.com/", None),
        ("https://example.com:8443/a", "https://example.com:8443/a", 8443),
        ("http://example.com", "http://example.com/", None),
        ("http://example.com?x=1", "http://example.com/?x=1", None),
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x", 8080),
        ("http://bücher.example.de/ä", "http://xn--bcher-kva.example.de/ä", None),
        ("http://example.com/a b", "http://example.com/a%20b", None),
        ("example.com/path/file.exe", "http://example.com/path/file.exe", None),
        ("example.com:8080/x", "http://example.com:8080/x", 8080),
        ("ws://example.com:80/socket", "ws://example.com/socket", None),
    ],
)
def test_url_normalization(raw: str, value: str, port: int | None) -> None:
    ind = parse_indicator(raw)
    assert (ind.type, ind.value, ind.port) == (IndicatorType.URL, value, port)


def test_url_unicode_host_keeps_readable_form() -> None:
    ind = parse_indicator("http://bücher.example.de/")
    assert ind.host == "xn--bcher-kva.example.de"
    assert ind.unicode_value == "bücher.example.de"


@pytest.mark.parametrize(
    "raw",
    [
        "javascript://alert(1)",
        "file:///etc/passwd",
        "http:///path",
        "http://exa mple.com/",
        "http://example.com:99999/",
        "http://[2001:db8::1/",
        "http://example.com:abc/",
    ],
)
def test_bad_urls(raw: str) -> None:
    _error(raw)


# Other rejects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        ("10.0.0.0/8", "unsupported_type", "CIDR"),
        ("2001:db8::/32", "unsupported_type", "CIDR"),
        ("someone@example.com", "unsupported_type", "email"),
        ("the quick brown fox", "invalid", "free text"),
        ("3232235777", "invalid", "bare number"),
        ("deadbeef", "invalid", "hex characters"),
        ("1.2.3.4.5", "invalid", "IPv4"),
        ("256.1.1.1", "invalid", "above 255"),
        ("2001:db8::g", "invalid", "IPv6"),
        ("localdomain", "invalid", "no top-level domain"),
        ("-bad.example.com", "invalid", "label"),
        ("a..example.com", "invalid", "empty label"),
        ("com", "invalid", "no top-level domain"),
        ("co.uk", "invalid", "public suffix"),
        ("example", "invalid", "top-level"),
    ],
)
def test_not_indicators(raw: str, reason: str, fragment: str) -> None:
    err = _error(raw)
    assert err.reason == reason
    assert fragment in str(err)


def test_length_cap() -> None:
    long_url = "http://example.com/" + "a" * MAX_INPUT_LENGTH
    err = _error(long_url)
    assert err.reason == "too_long"
    assert str(MAX_INPUT_LENGTH) in str(err)
    ok = "http://example.com/" + "a" * 4000
    assert parse_indicator(ok).value == ok


def test_domain_length_limit() -> None:
    name = ".".join(["a" * 60] * 5) + ".com"
    assert _error(name).reason == "invalid"


def test_underscore_labels_are_accepted() -> None:
    assert parse_indicator("_dmarc.example.com").value == "_dmarc.example.com"


# Fuzzing ------------------------------------------------------------------------------------------------

_DEFANG_ALPHABET = string.ascii_letters + string.digits + ".:/[]()@-_ \t\n?#%=&'\"<>{}\\"

_label = st.from_regex(r"[a-z0-9](?:[a-z0-9\-]{0,10}[a-z0-9])?", fullmatch=True)
_tld = st.sampled_from(["com", "net", "org", "de", "be", "co.uk", "jp", "io", "example", "onion", "xn--p1ai"])
_domains = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_label, min_size=1, max_size=4), _tld)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(str)
_hashes = st.sampled_from([32, 40, 64]).flatmap(
    lambda n: st.text(alphabet="0123456789abcdefABCDEF", min_size=n, max_size=n)
)
_paths = st.text(alphabet=string.ascii_letters + string.digits + "/._-~%?=&#+:;,()[]@!$'*", max_size=40)


def _url(scheme: str, host: str, port: int | None, path: str) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}{f':{port}' if port else ''}/{path}"


_urls = st.builds(
    _url,
    st.sampled_from(["http", "https", "HTTP", "hxxps", "ftp"]),
    st.one_of(_domains, _ipv4, _ipv6),
    st.one_of(st.none(), st.integers(1, 65535)),
    _paths,
)


def _defang(value: str) -> str:
    return value.replace(".", "[.]")


_valid_inputs = st.one_of(
    _domains,
    _ipv4,
    _ipv6,
    _hashes,
    _urls,
    _domains.map(_defang),
    _ipv4.map(_defang),
    _ipv4.map(lambda ip: ip + ":443"),
    _domains.map(lambda d: f"  {d.upper()}.\n"),
)

_fuzz_settings = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_round_trip(raw: str, hint: str | None = None) -> None:
    try:
        first = parse_indicator(raw, hint)
    except IndicatorError:
        return
    second = parse_indicator(first.value, hint)
    assert second.value == first.value
    assert second.type == first.type
    if first.type is IndicatorType.URL:  # for ip:port / host:port the port is context, not part of value
        assert second.port == first.port
    assert second.external_ti_allowed == first.external_ti_allowed
    assert second.known_benign == first.known_benign


@_fuzz_settings
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text_raises_only_indicator_error(raw: str) -> None:
    _check_round_trip(raw)


@_fuzz_settings
@given(st.text(alphabet=_DEFANG_ALPHABET, max_size=80))
def test_fuzz_indicator_like_text(raw: str) -> None:
    _check_round_trip(raw)


@_fuzz_settings
@given(_valid_inputs)
def test_fuzz_valid_inputs_parse_and_are_idempotent(raw: str) -> None:
    try:
        first = parse_indicator(raw)
    except IndicatorError as exc:
        # Only known refusals for generated valid shapes: file-like TLDs or label length limits.
        assert exc.reason in {"ambiguous", "invalid"}, exc
        return
    again = parse_indicator(first.value)
    assert again.value == first.value
    assert again.type == first.type


@_fuzz_settings
@given(_ipv4)
def test_fuzz_ipv4_value_matches_ipaddress(raw: str) -> None:
    assert parse_indicator(raw).value == str(ipaddress.IPv4Address(raw))


@_fuzz_settings
@given(st.ip_addresses(v=6))
def test_fuzz_ipv6_exploded_and_compressed_agree(addr: ipaddress.IPv6Address) -> None:
    assert parse_indicator(addr.exploded).value == parse_indicator(addr.compressed).value


@_fuzz_settings
@given(
    st.one_of(
        st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text()), st.dictionaries(st.text(), st.text())
    )
)
def test_fuzz_non_text_values(value: object) -> None:
    with pytest.raises(IndicatorError) as info:
        parse_indicator(value)
    assert info.value.reason in {"empty", "invalid"}


@_fuzz_settings
@given(st.text(max_size=60), st.sampled_from(["IP Address", "Domain", "URL", "File Hash", "md5", "ipv6", None]))
def test_fuzz_with_hints(raw: str, hint: str | None) -> None:
    _check_round_trip(raw, hint)


_long_text = st.builds(
    lambda head, filler, count, tail: head + filler * count + tail,
    st.sampled_from(["", "http://example.com/", "hxxps://a[.]example[.]com/", "198.51.100.1", "x"]),
    st.sampled_from(["a", ".", "[.]", "é", "/", " ", "0"]),
    st.integers(MAX_INPUT_LENGTH // 3 - 10, MAX_INPUT_LENGTH + 50),
    st.text(max_size=10),
)


@settings(max_examples=30, deadline=None)
@given(_long_text)
def test_fuzz_very_long_strings(raw: str) -> None:
    _check_round_trip(raw)
