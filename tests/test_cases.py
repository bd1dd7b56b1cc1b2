"""Input-handling rows of shared/cases/ioc_cases.md, each with sibling inputs of the same kind.

Every row stands for a kind of fault, so each test runs the listed input plus a few inputs that fail the
same way in other tools. Test names start with the case id.
"""

from __future__ import annotations

import pytest

from ioc_workflows_mcp.indicator import Indicator, IndicatorError, IndicatorType, parse_indicator


def _error(value: object, hint: str | None = None) -> IndicatorError:
    with pytest.raises(IndicatorError) as info:
        parse_indicator(value, hint)
    return info.value


# C01: a defanged IP must be refanged before any lookup ------------------------------------------------


def test_c01_defanged_ip_exact() -> None:
    ind = parse_indicator("198[.]51[.]100[.]23")
    assert ind.type is IndicatorType.IPV4
    assert ind.value == "198.51.100.23"
    assert ind.defanged is True
    assert ind.raw == "198[.]51[.]100[.]23"


@pytest.mark.parametrize(
    "raw",
    [
        "198(.)51(.)100(.)23",
        "198[dot]51[dot]100[dot]23",
        "198(dot)51(dot)100(dot)23",
        "198{.}51{.}100{.}23",
        "198[DOT]51[DOT]100[DOT]23",
        "198 dot 51 dot 100 dot 23",
        "198\\.51\\.100\\.23",
        "198[.]51.100[.]23",
        "198[ . ]51[ . ]100[ . ]23",
    ],
)
def test_c01_defang_forms_for_ip(raw: str) -> None:
    ind = parse_indicator(raw)
    assert (ind.type, ind.value, ind.defanged) == (IndicatorType.IPV4, "198.51.100.23", True)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("evil[.]example[.]com", "evil.example.com"),
        ("2001[:]db8[:][:]1", "2001:db8::1"),
        ("198[.]51[.]100[.]7[:]449", "198.51.100.7"),
    ],
)
def test_c01_defang_forms_for_other_types(raw: str, value: str) -> None:
    ind = parse_indicator(raw)
    assert ind.value == value
    assert ind.defanged is True


def test_c01_plain_input_is_not_marked_defanged() -> None:
    assert parse_indicator("198.51.100.23").defanged is False
    assert parse_indicator("HTTP://Example.com/").defanged is False


# C02: refanging keeps the scheme and understands [:] ----------------------------------------------------


def test_c02_hxxps_keeps_https() -> None:
    ind = parse_indicator("hxxps[:]//login.example[.]net/reset")
    assert ind.type is IndicatorType.URL
    assert ind.value == "https://login.example.net/reset"
    assert ind.host == "login.example.net"
    assert ind.host_type is IndicatorType.DOMAIN
    assert ind.defanged is True


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("hXXps://login.example[.]net/reset", "https://login.example.net/reset"),
        ("hxxp://login.example[.]net/reset", "http://login.example.net/reset"),
        ("HXXPS[://]login.example[.]net/reset", "https://login.example.net/reset"),
        ("https[:]//login.example.net/reset", "https://login.example.net/reset"),
        ("hxxps(:)//login.example(.)net/reset", "https://login.example.net/reset"),
        ("hxxps[:]//login[.]example[.]net/a[.]php?x=1", "https://login.example.net/a.php?x=1"),
        ("fxp://files.example[.]net/a.bin", "ftp://files.example.net/a.bin"),
        ("hxxps://login[dot]example[dot]net[/]reset", "https://login.example.net/reset"),
    ],
)
def test_c02_url_defang_forms(raw: str, value: str) -> None:
    ind = parse_indicator(raw)
    assert (ind.type, ind.value, ind.defanged) == (IndicatorType.URL, value, True)


# C05: hashes are trimmed and lowercased ----------------------------------------------------------------


def test_c05_uppercase_sha1_with_whitespace() -> None:
    ind = parse_indicator("  3395856CE81F2B7382DEE72602F798B642F14140\n")
    assert ind.type is IndicatorType.SHA1
    assert ind.value == "3395856ce81f2b7382dee72602f798b642f14140"
    assert ind.known_benign is None  # EICAR is test malware, not benign
    assert ind.external_ti_allowed is True


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("\tD41D8CD98F00B204E9800998ECF8427E\t", IndicatorType.MD5),
        ("\r\n3395856ce81f2b7382DEE72602f798b642f14140\r\n", IndicatorType.SHA1),
        ("  81DA1EA06029CD50D08146BD26E61103FEFA790CEB407E5983BAE69F7E5CED82 ", IndicatorType.SHA256),
        ('"3395856CE81F2B7382DEE72602F798B642F14140"', IndicatorType.SHA1),
        ("\u200b3395856CE81F2B7382DEE72602F798B642F14140", IndicatorType.SHA1),
    ],
)
def test_c05_hash_variants_normalize_to_one_value(raw: str, kind: IndicatorType) -> None:
    ind = parse_indicator(raw)
    assert ind.type is kind
    assert ind.value == raw.strip().strip('"').replace("\u200b", "").lower()


def test_c05_same_value_for_dedup() -> None:
    a = parse_indicator("3395856CE81F2B7382DEE72602F798B642F14140")
    b = parse_indicator("3395856ce81f2b7382dee72602f798b642f14140\n")
    assert a.value == b.value
    assert hash(a) == hash(b)


# C06: one host, with or without the root dot -----------------------------------------------------------


@pytest.mark.parametrize("raw", ["www.example.com.", "www.example.com", "WWW.EXAMPLE.COM.", "Www.Example.Com"])
def test_c06_trailing_dot_and_case(raw: str) -> None:
    ind = parse_indicator(raw)
    assert (ind.type, ind.value) == (IndicatorType.DOMAIN, "www.example.com")


def test_c06_example_com_root() -> None:
    assert parse_indicator("EXAMPLE.COM.").value == "example.com"


def test_c06_url_host_trailing_dot() -> None:
    assert parse_indicator("https://WWW.example.com./a").value == "https://www.example.com/a"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("bücher.example.de", "xn--bcher-kva.example.de"),
        ("BÜCHER.example.de.", "xn--bcher-kva.example.de"),
        ("xn--bcher-kva.example.de", "xn--bcher-kva.example.de"),
        ("例え.jp", "xn--r8jz45g.jp"),
        ("例え。jp", "xn--r8jz45g.jp"),
    ],
)
def test_c06_idn_names_have_one_value(raw: str, value: str) -> None:
    ind = parse_indicator(raw)
    assert (ind.type, ind.value) == (IndicatorType.DOMAIN, value)
    assert ind.unicode_value is not None
    assert any(flag.startswith("internationalized domain name") for flag in ind.flags)


# C07: RFC 5952 IPv6 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "2001:0DB8:0000::1",
        "2001:db8::1",
        "2001:0db8:0000:0000:0000:0000:0000:0001",
        "2001:DB8:0:0:0:0:0:1",
        "2001:db8:0::0:1",
        "[2001:db8::1]",
        "2001[:]db8[:][:]1",
    ],
)
def test_c07_ipv6_spellings_are_equal(raw: str) -> None:
    ind = parse_indicator(raw)
    assert (ind.type, ind.value) == (IndicatorType.IPV6, "2001:db8::1")


def test_c07_rfc5952_longest_zero_run_and_mapped() -> None:
    assert parse_indicator("2001:db8:0:0:1:0:0:1").value == "2001:db8::1:0:0:1"
    assert parse_indicator("2001:DB8:0:1:1:1:1:1").value == "2001:db8:0:1:1:1:1:1"
    assert parse_indicator("::FFFF:C000:0201").value == "::ffff:192.0.2.1"


# C08: zero-padded IPv4 read as decimal, with a warning ------------------------------------------------


def test_c08_zero_padded_ipv4() -> None:
    ind = parse_indicator("192.000.002.012")
    assert (ind.type, ind.value) == (IndicatorType.IPV4, "192.0.2.12")
    assert len(ind.warnings) == 1
    warning = ind.warnings[0]
    assert "decimal" in warning
    assert "192.0.2.10" in warning
    assert "octal" in warning


@pytest.mark.parametrize(
    ("raw", "value", "octal"),
    [
        ("010.001.002.003", "10.1.2.3", "8.1.2.3"),
        ("198.051.100.007", "198.51.100.7", "198.41.100.7"),
        ("203.0.113.09", "203.0.113.9", None),  # 09 is not octal
    ],
)
def test_c08_zero_padded_siblings(raw: str, value: str, octal: str | None) -> None:
    ind = parse_indicator(raw)
    assert ind.value == value
    assert ind.warnings and "decimal" in ind.warnings[0]
    if octal:
        assert octal in ind.warnings[0]
    else:
        assert "no valid octal reading" in ind.warnings[0]


def test_c08_url_host_zero_padded() -> None:
    ind = parse_indicator("http://192.000.002.012/x")
    assert ind.value == "http://192.0.2.12/x"
    assert ind.host == "192.0.2.12"
    assert any("192.0.2.10" in w for w in ind.warnings)


def test_c08_plain_ipv4_has_no_warning() -> None:
    assert parse_indicator("192.0.2.12").warnings == []


# C09: credentials in a URL are not the host -------------------------------------------------------------


def test_c09_credentials_in_url() -> None:
    ind = parse_indicator("http://user:pass@203.0.113.22:3128/")
    assert ind.type is IndicatorType.URL
    assert ind.host == "203.0.113.22"
    assert ind.host_type is IndicatorType.IPV4
    assert ind.port == 3128
    assert ind.value == "http://203.0.113.22:3128/"
    assert "credentials in URL removed" in ind.flags
    dumped = ind.model_dump_json()
    assert "pass" not in dumped
    assert "user" not in dumped


@pytest.mark.parametrize(
    ("raw", "host", "port"),
    [
        ("http://admin@203.0.113.22/", "203.0.113.22", None),
        ("https://u:p%40ss@login.example.net:8443/a", "login.example.net", 8443),
        ("hxxp://user:secret@bad[.]example[.]com/a", "bad.example.com", None),
        ("ftp://anonymous:me@files.example.org/pub", "files.example.org", None),
        ("http://user:pa:ss@[2001:db8::5]:8080/", "2001:db8::5", 8080),
        ("user:secret@files.example.org/pub/a.bin", "files.example.org", None),
    ],
)
def test_c09_credential_variants(raw: str, host: str, port: int | None) -> None:
    ind = parse_indicator(raw)
    assert (ind.host, ind.port) == (host, port)
    assert "credentials in URL removed" in ind.flags
    for secret in ("secret", "p%40ss", "pa:ss", "anonymous"):
        assert secret not in ind.value
        assert secret not in ind.raw


# C13: empty or missing values -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", None, "   ", "\n\t", '""', "[]", "\u200b"])
def test_c13_empty(value: object) -> None:
    err = _error(value)
    assert err.reason == "empty"
    assert "empty or invalid IOC value" in str(err)


@pytest.mark.parametrize("value", [0, 12, 3.5, ["8.8.8.8"], {"ioc": "8.8.8.8"}, b"8.8.8.8", True])
def test_c13_not_text(value: object) -> None:
    err = _error(value)
    assert err.reason == "invalid"
    assert "empty or invalid IOC value" in str(err)


@pytest.mark.parametrize("hint", ["File Hash", "domain", "IP Address", "url"])
def test_c13_empty_with_hint(hint: str) -> None:
    assert _error("", hint).reason == "empty"


# C14: "at" inside a label is not an email --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["data.example.com", "cat.example.org", "at.example.com", "DATA.EXAMPLE.COM", "www.atlas.example.net"]
)
def test_c14_at_letters_stay_domain(raw: str) -> None:
    ind = parse_indicator(raw)
    assert (ind.type, ind.value) == (IndicatorType.DOMAIN, raw.lower())
    assert ind.defanged is False


@pytest.mark.parametrize("raw", ["user[at]example.com", "user(at)example.com", "user AT example.com"])
def test_c14_delimited_at_is_an_email_and_rejected(raw: str) -> None:
    err = _error(raw)
    assert err.reason == "unsupported_type"
    assert "email" in str(err)


def test_c14_dot_letters_are_not_defang() -> None:
    assert parse_indicator("dotnet.example.com").value == "dotnet.example.com"
    assert parse_indicator("hotdot.example.com").value == "hotdot.example.com"


# C15: a file name in a URL path is not a domain ----------------------------------------------------------


def test_c15_url_path_file_is_not_a_domain() -> None:
    ind = parse_indicator("hxxps://example[.]com/file.ps1")
    assert ind.type is IndicatorType.URL
    assert ind.value == "https://example.com/file.ps1"
    assert ind.host == "example.com"
    assert ind.host_type is IndicatorType.DOMAIN


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("hxxps://example[.]com/dl/file.ps1?x=1", "https://example.com/dl/file.ps1?x=1"),
        ("https://example.com/invoice.zip", "https://example.com/invoice.zip"),
        ("example[.]com/file.ps1", "http://example.com/file.ps1"),
        ("https://example.com/a/file[.]sh", "https://example.com/a/file.sh"),
    ],
)
def test_c15_siblings(raw: str, value: str) -> None:
    ind = parse_indicator(raw)
    assert (ind.type, ind.value, ind.host) == (IndicatorType.URL, value, "example.com")


def test_c15_url_on_file_like_tld_host_is_fine() -> None:
    ind = parse_indicator("https://invoice.zip/download")
    assert (ind.host, ind.host_type) == ("invoice.zip", IndicatorType.DOMAIN)


# C16: a name that is both a domain and a file name -----------------------------------------------------


def test_c16_ambiguous_without_hint() -> None:
    err = _error("invoice.zip")
    assert err.reason == "ambiguous"
    assert "domain" in str(err)
    assert "file name" in str(err)
    assert 'ioc_type="domain"' in str(err)


def test_c16_with_domain_hint() -> None:
    ind = parse_indicator("invoice.zip", "domain")
    assert (ind.type, ind.value) == (IndicatorType.DOMAIN, "invoice.zip")
    assert Indicator.parse("invoice.zip", "Domain").value == "invoice.zip"


def test_c16_as_file_name() -> None:
    err = _error("invoice.zip", "file name")
    assert err.reason == "unsupported_type"
    assert "file names are not a supported IOC type" in str(err)


@pytest.mark.parametrize("raw", ["movie.mov", "setup.py", "install.sh", "backup.pl", "README.md", "lib.rs"])
def test_c16_siblings_ambiguous(raw: str) -> None:
    assert _error(raw).reason == "ambiguous"
    assert parse_indicator(raw, "hostname").value == raw.lower()


@pytest.mark.parametrize("raw", ["www.example.pl", "mail.example.sh", "cdn.files.example.md", "test.fun"])
def test_c16_deeper_names_on_cctld_are_domains(raw: str) -> None:
    assert parse_indicator(raw).type is IndicatorType.DOMAIN


def test_c16_ambiguous_name_with_other_hint_is_a_mismatch() -> None:
    err = _error("invoice.zip", "IP Address")
    assert err.reason == "type_mismatch"


# C17: unknown TLD is not a domain; known ccTLDs work offline ------------------------------------------


def test_c17_unknown_tld() -> None:
    err = _error("payload.xrat")
    assert err.reason == "unknown_tld"
    assert "not a valid domain: unknown TLD `xrat`" in str(err)


def test_c17_known_tld_offline() -> None:
    ind = parse_indicator("www.example.be")
    assert (ind.type, ind.value) == (IndicatorType.DOMAIN, "www.example.be")


@pytest.mark.parametrize("raw", ["payload.exe", "dropper.dll", "run.bat", "loader.ps1", "doc.docm"])
def test_c17_file_names_with_non_tld_extension(raw: str) -> None:
    err = _error(raw)
    assert err.reason == "unknown_tld"
    assert "file name" in str(err)


@pytest.mark.parametrize(
    "raw", ["example.co.uk", "example.com.au", "xn--r8jz45g.jp", "example.xn--p1ai", "пример.рф", "a.b.c.example.io"]
)
def test_c17_real_tlds(raw: str) -> None:
    assert parse_indicator(raw).type is IndicatorType.DOMAIN


def test_c17_unknown_tld_with_domain_hint_still_fails() -> None:
    assert _error("payload.xrat", "domain").reason == "unknown_tld"
    assert _error("evil.xrat.", "domain").reason == "unknown_tld"


def test_c17_unknown_tld_in_url_host() -> None:
    assert _error("http://payload.xrat/a").reason == "unknown_tld"


# C20: ip:port is an IP with a port, not a URL ---------------------------------------------------------


def test_c20_ip_port() -> None:
    ind = parse_indicator("198.51.100.7:449")
    assert (ind.type, ind.value, ind.port) == (IndicatorType.IPV4, "198.51.100.7", 449)


@pytest.mark.parametrize(
    ("raw", "kind", "value", "port"),
    [
        ("198[.]51[.]100[.]7:449", IndicatorType.IPV4, "198.51.100.7", 449),
        ("198[.]51[.]100[.]7", IndicatorType.IPV4, "198.51.100.7", None),
        ("[2001:db8::7]:8443", IndicatorType.IPV6, "2001:db8::7", 8443),
        ("example.com:8080", IndicatorType.DOMAIN, "example.com", 8080),
        ("198.51.100.7:449/", IndicatorType.IPV4, "198.51.100.7", 449),
    ],
)
def test_c20_siblings(raw: str, kind: IndicatorType, value: str, port: int | None) -> None:
    ind = parse_indicator(raw)
    assert (ind.type, ind.value, ind.port) == (kind, value, port)


@pytest.mark.parametrize("raw", ["198.51.100.7:0", "198.51.100.7:70000", "198.51.100.7:abc"])
def test_c20_bad_ports(raw: str) -> None:
    assert _error(raw).reason == "invalid"


# C23: private and other non-routable addresses get no external TI -----------------------------------


def test_c23_private_ip() -> None:
    ind = parse_indicator("10.20.30.40")
    assert (ind.type, ind.value) == (IndicatorType.IPV4, "10.20.30.40")
    assert "private (RFC 1918)" in ind.flags
    assert ind.external_ti_allowed is False
    assert ind.ti_skip_reason == "non-routable: private (RFC 1918)"


@pytest.mark.parametrize(
    ("raw", "flag"),
    [
        ("172.16.5.4", "private (RFC 1918)"),
        ("192.168.1.1", "private (RFC 1918)"),
        ("10[.]0[.]0[.]1", "private (RFC 1918)"),
        ("100.64.1.1", "shared address space / CGNAT (RFC 6598)"),
        ("127.0.0.1", "loopback (RFC 1122)"),
        ("169.254.169.254", "link-local (RFC 3927)"),
        ("fd12:3456::1", "unique local address / ULA (RFC 4193)"),
        ("fe80::1", "link-local (RFC 4291)"),
    ],
)
def test_c23_siblings(raw: str, flag: str) -> None:
    ind = parse_indicator(raw)
    assert flag in ind.flags
    assert ind.external_ti_allowed is False
    assert ind.ti_skip_reason == f"non-routable: {flag}"


def test_c23_url_on_private_host() -> None:
    ind = parse_indicator("http://10.20.30.40:8080/admin")
    assert "host: private (RFC 1918)" in ind.flags
    assert ind.external_ti_allowed is False
    assert ind.ti_skip_reason == "non-routable host: private (RFC 1918)"


def test_c23_public_ip_is_allowed() -> None:
    ind = parse_indicator("93.184.215.14")
    assert ind.external_ti_allowed is True
    assert ind.ti_skip_reason is None
    assert ind.flags == []


# C24 (input side): a made-up SHA-256 parses as an ordinary sha256 -----------------------------------


def test_c24_unknown_sha256_input() -> None:
    value = "81da1ea06029cd50d08146bd26e61103fefa790ceb407e5983bae69f7e5ced82"
    ind = parse_indicator(value)
    assert (ind.type, ind.value, ind.family) == (IndicatorType.SHA256, value, "file")
    assert ind.external_ti_allowed is True
    assert ind.known_benign is None
    assert ind.flags == []
    assert parse_indicator(value.upper(), "File Hash").value == value


# C30: warning-list values are flagged --------------------------------------------------------------------


def test_c30_empty_md5_is_known_benign() -> None:
    ind = parse_indicator("d41d8cd98f00b204e9800998ecf8427e")
    assert ind.type is IndicatorType.MD5
    assert "known benign: MD5 of empty input" in ind.flags
    assert ind.known_benign == "MD5 of empty input"
    assert ind.external_ti_allowed is True


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", "SHA-1 of empty input"),
        ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "SHA-256 of empty input"),
        ("1.1.1.1", "public DNS resolver (Cloudflare 1.1.1.1)"),
        ("8[.]8[.]8[.]8", "public DNS resolver (Google Public DNS)"),
        ("2001:4860:4860:0:0:0:0:8888", "public DNS resolver (Google Public DNS)"),
        ("9.9.9.9", "public DNS resolver (Quad9)"),
    ],
)
def test_c30_siblings(raw: str, reason: str) -> None:
    ind = parse_indicator(raw)
    assert ind.known_benign == reason
    assert f"known benign: {reason}" in ind.flags


def test_c30_unspecified_address_is_non_routable() -> None:
    ind = parse_indicator("0.0.0.0")
    assert ind.flags == ["unspecified (RFC 1122)"]
    assert ind.external_ti_allowed is False


@pytest.mark.parametrize("placeholder", ["None", "null", "undefined", "NaN", "N/A", "-", "unknown"])
def test_c13_placeholders_are_empty_values(placeholder: str) -> None:
    """The same kind as C13: a placeholder where a value should be is "empty or invalid", not a bad domain."""
    with pytest.raises(IndicatorError) as caught:
        parse_indicator(placeholder)
    assert caught.value.reason == "empty"
    assert "empty or invalid IOC value" in str(caught.value) and "placeholder" in str(caught.value)
