"""Turn user input into one validated, normalized indicator of compromise (IOC).

Every workflow, cache key and de-duplication step uses ``Indicator.value``, so this module is the one place
that decides what an input means. The order of the work is:

1. reject what is not text, is empty or is too long;
2. remove wrapping quotes/brackets, invisible characters and trailing punctuation;
3. refang (``198[.]51[.]100[.]23``, ``hxxps[:]//``) until nothing changes, so the result is a fixed point;
4. detect the type by shape (hash, URL, IPv6, IPv4, domain) and check it against the caller's type hint;
5. normalize (RFC 5952 IPv6, decimal IPv4 octets, lowercase punycode domains, lowercase hashes, URLs
   without credentials or default ports);
6. add policy facts: non-routable and special-use addresses and names (no external threat intelligence),
   and the bundled known-benign / shared-infrastructure list.

Parsing is pure and idempotent: ``parse(parse(x).value).value == parse(x).value``. The only exception
it raises is :class:`IndicatorError`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Literal

import idna
from publicsuffixlist import PublicSuffixList
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_INPUT_LENGTH",
    "Indicator",
    "IndicatorError",
    "IndicatorType",
    "is_benign_infrastructure",
    "known_benign_reason",
    "normalize_type_hint",
    "parse_indicator",
]

MAX_INPUT_LENGTH = 8192
"""Longest accepted input, in characters (8 KiB). Real URLs in threat data fit well below this."""

SUPPORTED_TYPES_TEXT = "IPv4, IPv6, domain, URL, MD5, SHA-1, SHA-256"


class IndicatorType(StrEnum):
    """The indicator types the workflows support."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"
    DOMAIN = "domain"
    URL = "url"
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"

    @property
    def family(self) -> Literal["ip", "domain", "url", "file"]:
        """The upstream object family: GTI and the SIEM group lookups by this, not by the exact type."""
        if self in (IndicatorType.IPV4, IndicatorType.IPV6):
            return "ip"
        if self is IndicatorType.DOMAIN:
            return "domain"
        if self is IndicatorType.URL:
            return "url"
        return "file"


_HASH_LENGTHS = {32: IndicatorType.MD5, 40: IndicatorType.SHA1, 64: IndicatorType.SHA256}


class IndicatorError(ValueError):
    """An input is not a usable indicator. ``reason`` is a short machine code, the message is for people.

    Reasons: ``empty``, ``invalid``, ``too_long``, ``unknown_tld``, ``ambiguous``, ``unsupported_type``,
    ``type_mismatch``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# --------------------------------------------------------------------------------------------------
# Type hints
# --------------------------------------------------------------------------------------------------

TypeHint = IndicatorType | Literal["hash", "ip"]

_HINT_WORDS: dict[str, TypeHint] = {
    "ip": "ip",
    "ipaddress": "ip",
    "ipaddr": "ip",
    "ipv4": IndicatorType.IPV4,
    "ip4": IndicatorType.IPV4,
    "ipv4address": IndicatorType.IPV4,
    "ipv6": IndicatorType.IPV6,
    "ip6": IndicatorType.IPV6,
    "ipv6address": IndicatorType.IPV6,
    "domain": IndicatorType.DOMAIN,
    "domainname": IndicatorType.DOMAIN,
    "hostname": IndicatorType.DOMAIN,
    "host": IndicatorType.DOMAIN,
    "fqdn": IndicatorType.DOMAIN,
    "url": IndicatorType.URL,
    "uri": IndicatorType.URL,
    "hash": "hash",
    "filehash": "hash",
    "file": "hash",
    "md5": IndicatorType.MD5,
    "sha1": IndicatorType.SHA1,
    "sha256": IndicatorType.SHA256,
}

_UNSUPPORTED_HINTS: dict[str, str] = {
    "filename": "file names are not a supported IOC type",
    "filepath": "file paths are not a supported IOC type",
    "email": "email addresses are not a supported IOC type",
    "emailaddress": "email addresses are not a supported IOC type",
    "cidr": "CIDR ranges are not a supported IOC type",
    "iprange": "IP ranges are not a supported IOC type",
    "sha512": "SHA-512 hashes are not a supported IOC type",
    "ssdeep": "ssdeep hashes are not a supported IOC type",
    "imphash": "imphashes are not a supported IOC type",
    "tlsh": "TLSH hashes are not a supported IOC type",
}

_ACCEPTED_HINTS_TEXT = (
    '"IP Address", "Domain", "URL", "File Hash", "Hash", or ip, ipv4, ipv6, domain, hostname, fqdn, '
    "url, uri, hash, file, md5, sha1, sha256"
)


def normalize_type_hint(hint: str | None) -> IndicatorType | Literal["hash", "ip"] | None:
    """Map a runbook word ("IP Address", "File Hash") or a short form (ipv4, sha-256) to a type.

    Returns ``None`` for no hint (``None``, empty, "auto"), ``"ip"`` for a hint that allows IPv4 or IPv6,
    ``"hash"`` for one that allows any supported hash length. Case, spaces, underscores and hyphens are
    ignored. Unsupported kinds (file names, emails) and unknown words raise :class:`IndicatorError`.
    """
    if hint is None:
        return None
    if not isinstance(hint, str):
        raise IndicatorError("invalid", f"ioc_type must be text; accepted values: {_ACCEPTED_HINTS_TEXT}")
    key = re.sub(r"[\s_\-]+", "", hint).lower()
    if key in ("", "auto", "any"):
        return None
    if key in _HINT_WORDS:
        return _HINT_WORDS[key]
    if key in _UNSUPPORTED_HINTS:
        raise IndicatorError(
            "unsupported_type",
            f"{_UNSUPPORTED_HINTS[key]}; supported types: {SUPPORTED_TYPES_TEXT}",
        )
    shown = hint if len(hint) <= 40 else hint[:40] + "…"
    raise IndicatorError("invalid", f"unknown ioc_type {shown!r}; accepted values: {_ACCEPTED_HINTS_TEXT}")


def _hint_label(hint: TypeHint) -> str:
    return {"ip": "an IP address", "hash": "a file hash"}.get(str(hint), f"{hint}")


def _hint_accepts(hint: TypeHint, found: IndicatorType) -> bool:
    if hint == "ip":
        return found.family == "ip"
    if hint == "hash":
        return found.family == "file"
    return hint == found


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


class Indicator(BaseModel):
    """One validated indicator. Build it with :meth:`parse`; every lookup uses :attr:`value`."""

    model_config = ConfigDict(frozen=True)

    raw: str = Field(description="The input as given, trimmed; credentials in URLs are masked.")
    value: str = Field(description="Normalized value used for every lookup, cache key and de-duplication.")
    type: IndicatorType = Field(description="Indicator type.")
    defanged: bool = Field(default=False, description="The input was defanged and has been refanged.")
    port: int | None = Field(default=None, description="Port from `ip:port` input or a URL's explicit port.")
    host: str | None = Field(default=None, description="For URLs: the normalized host (domain or IP).")
    host_type: IndicatorType | None = Field(default=None, description="For URLs: the type of `host`.")
    unicode_value: str | None = Field(
        default=None, description="Readable Unicode form of an internationalized domain (or URL host)."
    )
    flags: list[str] = Field(default_factory=list, description="Policy facts, e.g. 'private (RFC 1918)'.")
    warnings: list[str] = Field(default_factory=list, description="Things the parser had to interpret.")
    external_ti_allowed: bool = Field(
        default=True,
        description="False for non-routable, documentation and special-use values: no external TI lookup.",
    )
    ti_skip_reason: str | None = Field(default=None, description="Why external TI is skipped, if it is.")
    known_benign: str | None = Field(
        default=None,
        description="Reason when the value is on the bundled benign / shared-infrastructure list.",
    )

    @property
    def family(self) -> Literal["ip", "domain", "url", "file"]:
        """``ip``, ``domain``, ``url`` or ``file``."""
        return self.type.family

    def __hash__(self) -> int:
        # Equal indicators share type, value and port, so this agrees with ==; lists make the default fail.
        return hash((self.type, self.value, self.port))

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: object, type_hint: str | None = None) -> Indicator:
        """Parse, refang and normalize ``value``; ``type_hint`` (runbook word or short form) is checked.

        Raises :class:`IndicatorError` (and nothing else) when the input is not a supported indicator.
        """
        hint = normalize_type_hint(type_hint)
        if isinstance(value, Indicator):
            if hint is None or _hint_accepts(hint, value.type):
                return value
            value = value.value
        try:
            return _parse(value, hint)
        except IndicatorError:
            raise
        except (ValueError, UnicodeError, OverflowError) as exc:  # safety net: library errors on odd input
            raise IndicatorError("invalid", f"empty or invalid IOC value: {exc}") from None


def parse_indicator(value: object, type_hint: str | None = None) -> Indicator:
    """Same as :meth:`Indicator.parse`."""
    return Indicator.parse(value, type_hint)


# --------------------------------------------------------------------------------------------------
# Step 1-3: prepare the text and refang it
# --------------------------------------------------------------------------------------------------

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad"), None)
_DOT_LOOKALIKES = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_WRAPPERS = {
    '"': '"',
    "'": "'",
    "`": "`",
    "<": ">",
    "(": ")",
    "[": "]",
    "{": "}",
    "“": "”",
    "‘": "’",
    "«": "»",
}
_TRAILING_PUNCT = ",;!?"

_OPEN = r"[\[\(\{]\s*"
_CLOSE = r"\s*[\]\)\}]"
# (pattern, replacement). Word forms ("dot", "at") only count when bracketed or space-delimited, so the
# letters "at" inside "data.example.com" are never touched (case C14).
_REFANG_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^h(?:xx|\*\*|x)p(s?)(?=[:\[\(\{])", re.IGNORECASE), r"http\1"),
    (re.compile(r"^fxp(s?)(?=[:\[\(\{])", re.IGNORECASE), r"ftp\1"),
    (re.compile(_OPEN + r":\s*//" + _CLOSE), "://"),
    (re.compile(_OPEN + r":" + _CLOSE + r"\s*//"), "://"),
    (re.compile(_OPEN + r":" + _CLOSE), ":"),
    (re.compile(_OPEN + r"//" + _CLOSE), "//"),
    (re.compile(_OPEN + r"/" + _CLOSE), "/"),
    (re.compile(_OPEN + r"(?:\.|dot)" + _CLOSE, re.IGNORECASE), "."),
    (re.compile(r"\\\."), "."),
    (re.compile(r"\s+dot\s+", re.IGNORECASE), "."),
    (re.compile(_OPEN + r"(?:@|at)" + _CLOSE, re.IGNORECASE), "@"),
    (re.compile(r"\s+at\s+", re.IGNORECASE), "@"),
]


_PLACEHOLDERS = frozenset({"none", "null", "nil", "undefined", "nan", "n/a", "na", "-", "--", "?", "tbd", "unknown"})


def _prepare(value: object) -> tuple[str, str, list[str]]:
    """Check the input's kind and size; return (raw, cleaned text, warnings)."""
    if value is None:
        raise IndicatorError("empty", "empty or invalid IOC value: got nothing (None)")
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        value = str(value)
    if not isinstance(value, str):
        raise IndicatorError(
            "invalid",
            f"empty or invalid IOC value: expected text, got {type(value).__name__}; "
            f"supported types: {SUPPORTED_TYPES_TEXT}",
        )
    raw = value.strip()
    if not raw:
        raise IndicatorError("empty", "empty or invalid IOC value: the value is empty or only whitespace")
    if raw.lower() in _PLACEHOLDERS:
        # What a spreadsheet, a JSON null turned into text or an empty form field sends (case C13's kind).
        raise IndicatorError("empty", f"empty or invalid IOC value: `{raw}` is a placeholder, not an indicator")
    if len(raw) > MAX_INPUT_LENGTH:
        raise IndicatorError(
            "too_long",
            f"IOC value is {len(raw)} characters; the limit is {MAX_INPUT_LENGTH} (8 KiB)",
        )
    warnings: list[str] = []
    text = raw.translate(_INVISIBLE)
    if text != raw:
        warnings.append("invisible characters (zero-width space, soft hyphen, BOM) removed")
    text = text.translate(_DOT_LOOKALIKES)
    return raw, text, warnings


def _unwrap(text: str, warnings: list[str]) -> str:
    """Remove wrapping quotes/brackets and trailing sentence punctuation, until nothing changes."""
    while True:
        before = text
        text = text.strip()
        while text and text[-1] in _TRAILING_PUNCT:
            warnings.append(f"trailing {text[-1]!r} removed")
            text = text[:-1].rstrip()
        # Keep "[.]"-style and "[2001:db8::1]:443"-style text: only strip a pair that wraps the whole.
        if len(text) >= 2 and _WRAPPERS.get(text[0]) == text[-1] and _balanced(text[1:-1]):
            text = text[1:-1]
        elif text and text[-1] in ")]}>" and not _balanced(text):
            warnings.append(f"unbalanced trailing {text[-1]!r} removed")
            text = text[:-1]
        elif text and text[0] in "([{<" and not _balanced(text):
            warnings.append(f"unbalanced leading {text[0]!r} removed")
            text = text[1:]
        if text == before:
            return text


def _balanced(text: str) -> bool:
    depth = {"(": 0, "[": 0, "{": 0, "<": 0}
    closers = {")": "(", "]": "[", "}": "{", ">": "<"}
    for ch in text:
        if ch in depth:
            depth[ch] += 1
        elif ch in closers:
            depth[closers[ch]] -= 1
            if depth[closers[ch]] < 0:
                return False
    return all(v == 0 for v in depth.values())


def _refang(text: str) -> str:
    """Apply every refang rule until the text stops changing (so a refanged value refangs to itself)."""
    for _ in range(16):
        before = text
        for pattern, replacement in _REFANG_RULES:
            text = pattern.sub(replacement, text)
        if text == before:
            break
    return text


def _mask_credentials(raw: str) -> str:
    """Replace ``user:pass`` before the host of a URL with ``***``: raw text is echoed back in results."""
    start = raw.find("//")
    start = 0 if start < 0 else start + 2
    end = min([i for i in (raw.find(c, start) for c in "/?#") if i >= 0], default=len(raw))
    at = raw.rfind("@", start, end)
    return raw if at < 0 else raw[:start] + "***" + raw[at:]


# --------------------------------------------------------------------------------------------------
# Step 4-5: detect and normalize
# --------------------------------------------------------------------------------------------------


@dataclass
class _Found:
    """What detection found, before policy flags."""

    type: IndicatorType
    value: str
    port: int | None = None
    host: str | None = None
    host_type: IndicatorType | None = None
    unicode_value: str | None = None
    ambiguous: str | None = None
    warnings: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


_HEX = re.compile(r"[0-9a-fA-F]+")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_IPV4_SHAPE = re.compile(r"\d+(?:\.\d+){3}")
_DIGITS_AND_DOTS = re.compile(r"[\d.]+")
_CIDR = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}/\d{1,2}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*/\d{1,3}")
_HOST_PORT = re.compile(r"(.+?):(\d{1,5})")
_ASCII_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ftps": 990, "ws": 80, "wss": 443}
_URL_SCHEMES = frozenset(_DEFAULT_PORTS) | {"sftp"}


def _detect(text: str) -> _Found:
    """Classify refanged text by shape and return it normalized."""
    if text.isdigit() and len(text) not in _HASH_LENGTHS:
        raise IndicatorError(
            "invalid",
            f"not an indicator: `{_short(text)}` is a bare number; write IPv4 as a dotted quad (192.0.2.1). "
            f"Supported types: {SUPPORTED_TYPES_TEXT}",
        )
    if _HEX.fullmatch(text):
        return _parse_hash(text)
    if _SCHEME.match(text):
        return _parse_url(text)
    if re.search(r"\s", text):
        raise IndicatorError(
            "invalid",
            "not an indicator: the value contains spaces (free text?); give one IOC of a supported type: "
            + SUPPORTED_TYPES_TEXT,
        )
    if _CIDR.fullmatch(text):
        raise IndicatorError(
            "unsupported_type",
            f"CIDR ranges are not a supported IOC type (`{text}`); give a single address. "
            f"Supported types: {SUPPORTED_TYPES_TEXT}",
        )
    if any(ch in text for ch in "/?#"):
        return _parse_schemeless_url(text)
    if "@" in text:
        raise IndicatorError(
            "unsupported_type",
            f"`{_short(text)}` looks like an email address; email addresses are not a supported IOC type "
            f"(supported: {SUPPORTED_TYPES_TEXT}). Query the domain after the @ instead.",
        )
    if text.startswith("[") or text.count(":") >= 2:
        return _parse_ipv6_with_port(text)
    host, port = _split_port(text)
    found = _parse_ipv4(host) if _DIGITS_AND_DOTS.fullmatch(host) else _parse_domain(host)
    found.port = port
    return found


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _split_port(text: str) -> tuple[str, int | None]:
    """``host:port`` -> (host, port). A bare ``host:port`` stays a host with a port, never a URL (C20)."""
    match = _HOST_PORT.fullmatch(text)
    if not match:
        if ":" in text:
            raise IndicatorError(
                "invalid",
                f"not an indicator: `{_short(text)}` has a `:` that is not followed by a port number",
            )
        return text, None
    return match.group(1), _port(match.group(2))


def _port(digits: str) -> int:
    port = int(digits)
    if not 1 <= port <= 65535:
        raise IndicatorError("invalid", f"port {port} is out of range (1-65535)")
    return port


def _parse_hash(text: str) -> _Found:
    kind = _HASH_LENGTHS.get(len(text))
    if kind is None:
        raise IndicatorError(
            "invalid",
            f"not a valid file hash: {len(text)} hex characters; MD5 has 32, SHA-1 40, SHA-256 64",
        )
    return _Found(type=kind, value=text.lower())


def _parse_ipv4(text: str) -> _Found:
    """Dotted-quad IPv4. Zero-padded octets are read as decimal, with a warning (C08), never dropped."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and p.isascii() for p in parts):
        raise IndicatorError("invalid", f"not a valid IPv4 address: `{_short(text)}` (need four numbers 0-255)")
    octets = [int(p) for p in parts]
    if any(o > 255 for o in octets):
        raise IndicatorError("invalid", f"not a valid IPv4 address: `{_short(text)}` has an octet above 255")
    value = ".".join(map(str, octets))
    found = _Found(type=IndicatorType.IPV4, value=value)
    padded = [p for p in parts if len(p) > 1 and p.startswith("0")]
    if padded:
        found.warnings.append(_leading_zero_warning(text, parts, value))
    return found


def _leading_zero_warning(text: str, parts: list[str], value: str) -> str:
    octal_parts: list[str] = []
    for part in parts:
        if len(part) > 1 and part.startswith("0"):
            if any(ch in "89" for ch in part) or int(part, 8) > 255:
                octal_parts = []
                break
            octal_parts.append(str(int(part, 8)))
        else:
            octal_parts.append(part)
    octal = ".".join(octal_parts) if octal_parts else None
    tail = f"; an octal reading would give {octal}" if octal else "; it has no valid octal reading"
    return f"leading zeros in `{text}` were read as decimal ({value}){tail}"


def _parse_ipv6_with_port(text: str) -> _Found:
    """IPv6, optionally as ``[addr]`` or ``[addr]:port``."""
    port = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise IndicatorError("invalid", f"not a valid IPv6 address: `{_short(text)}` has no closing `]`")
        rest = text[close + 1 :]
        if rest:
            if not re.fullmatch(r":\d{1,5}", rest):
                raise IndicatorError("invalid", f"not a valid IPv6 address: unexpected `{_short(rest)}`")
            port = _port(rest[1:])
        text = text[1:close]
    found = _parse_ipv6(text)
    found.port = port
    return found


def _parse_ipv6(text: str) -> _Found:
    warnings = []
    if "%" in text:
        text, zone = text.split("%", 1)
        warnings.append(f"zone index `%{_short(zone, 20)}` dropped; it only has meaning on one host")
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        raise IndicatorError("invalid", f"not a valid IPv6 address: `{_short(text)}`") from None
    return _Found(type=IndicatorType.IPV6, value=_ipv6_text(addr), warnings=warnings)


def _ip_text(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return _ipv6_text(addr) if isinstance(addr, ipaddress.IPv6Address) else str(addr)


def _ipv6_text(addr: ipaddress.IPv6Address) -> str:
    """RFC 5952 text: compressed lowercase; IPv4-mapped addresses end in dotted quad (RFC 5952 section 5)."""
    if addr.ipv4_mapped is not None:
        return f"::ffff:{addr.ipv4_mapped}"
    return addr.compressed


# Domains ------------------------------------------------------------------------------------------

# Special-use names (IANA special-use domain registry and ICANN decisions). Accepted as domains, flagged,
# and, except for .onion (globally unique Tor names that threat intelligence does track), kept from
# external threat intelligence because they never resolve on the public DNS.
_SPECIAL_SUFFIXES: dict[str, tuple[str, bool]] = {
    "example": ("RFC 2606", False),
    "test": ("RFC 2606", False),
    "invalid": ("RFC 2606", False),
    "localhost": ("RFC 6761", False),
    "local": ("RFC 6762, multicast DNS", False),
    "home.arpa": ("RFC 8375", False),
    "alt": ("RFC 9476", False),
    "internal": ("reserved for private use by ICANN, 2024", False),
    "lan": ("private use, RFC 6762 appendix G", False),
    "home": ("private use, RFC 6762 appendix G", False),
    "corp": ("private use, RFC 6762 appendix G", False),
    "intranet": ("private use, RFC 6762 appendix G", False),
    "private": ("private use, RFC 6762 appendix G", False),
    "onion": ("RFC 7686, Tor onion service", True),
}

# Real ICANN TLDs that are also common file extensions. Without a type hint such a name is ambiguous
# (C16). The first set is ambiguous at any depth (new gTLDs chosen to look like files); the second only
# for a bare "name.ext", since "www.example.pl" is plainly a host while "script.pl" may be a Perl file.
_FILE_LIKE_TLDS_ANY = frozenset({"zip", "mov"})
_FILE_LIKE_TLDS_BARE = frozenset(
    {"py", "sh", "pl", "pm", "rs", "ps", "md", "cab", "so", "cc", "run", "app", "ml", "ws", "sc"}
)
# Common file extensions that are not TLDs: used only to word the unknown-TLD error helpfully.
_FILE_EXTENSIONS = frozenset(
    [
        "exe",
        "dll",
        "sys",
        "bat",
        "cmd",
        "ps1",
        "psm1",
        "vbs",
        "vbe",
        "js",
        "jse",
        "wsf",
        "hta",
        "lnk",
        "scr",
        "pif",
        "msi",
        "msp",
        "jar",
        "class",
        "apk",
        "ipa",
        "dmg",
        "deb",
        "rpm",
        "iso",
        "img",
        "vhd",
        "vhdx",
        "doc",
        "docx",
        "docm",
        "xls",
        "xlsx",
        "xlsm",
        "ppt",
        "pptx",
        "pdf",
        "rtf",
        "txt",
        "csv",
        "json",
        "xml",
        "html",
        "htm",
        "php",
        "asp",
        "aspx",
        "jsp",
        "cgi",
        "tar",
        "gz",
        "tgz",
        "bz2",
        "xz",
        "7z",
        "rar",
        "elf",
        "bin",
        "dat",
        "tmp",
        "log",
        "ini",
        "cfg",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "bmp",
        "ico",
        "svg",
        "mp3",
        "mp4",
        "avi",
        "wav",
        "one",
        "onepkg",
        "chm",
        "inf",
        "reg",
        "url",
    ]
)


@cache
def _psl_icann() -> PublicSuffixList:
    return PublicSuffixList(only_icann=True, accept_unknown=False)


@cache
def _psl_full() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=False)


def _special_suffix(name: str) -> tuple[str, str, bool] | None:
    """(suffix, source, ti_allowed) when ``name`` ends in a special-use name."""
    for suffix, (source, ti_allowed) in _SPECIAL_SUFFIXES.items():
        if name == suffix or name.endswith("." + suffix):
            return suffix, source, ti_allowed
    return None


def _idna_label(label: str, name: str) -> str:
    """One label to lowercase ASCII. ASCII labels may hold underscores (seen in DNS data); others use
    IDNA2008 with UTS 46 mapping, as browsers do."""
    lowered = label.lower()
    if lowered.isascii():
        if not _ASCII_LABEL.fullmatch(lowered):
            raise IndicatorError(
                "invalid",
                f"not a valid domain: label `{_short(label, 70)}` in `{_short(name)}` "
                "(letters, digits, hyphens; 1-63 characters; no hyphen at either end)",
            )
        if lowered.startswith("xn--"):
            try:
                idna.decode(lowered)
            except (idna.IDNAError, UnicodeError, ValueError):
                raise IndicatorError("invalid", f"not a valid domain: bad punycode label `{lowered}`") from None
        return lowered
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise IndicatorError(
            "invalid", f"not a valid internationalized domain: label `{_short(label, 70)}` ({exc})"
        ) from None


def _to_unicode(ascii_name: str) -> str | None:
    if not any(label.startswith("xn--") for label in ascii_name.split(".")):
        return None
    try:
        return idna.decode(ascii_name)
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def _parse_domain(text: str, *, as_url_host: bool = False) -> _Found:
    """A DNS name with a public (ICANN) or special-use TLD, as lowercase punycode without trailing dot."""
    name = text[:-1] if text.endswith(".") else text  # the root dot names the same host (C06)
    labels = name.split(".")
    if not name or "" in labels:
        raise IndicatorError("invalid", f"not a valid domain: `{_short(text)}` has an empty label")
    ascii_name = ".".join(_idna_label(label, name) for label in labels)
    if len(ascii_name) > 253:
        raise IndicatorError("invalid", f"not a valid domain: {len(ascii_name)} characters, the limit is 253")
    found = _Found(type=IndicatorType.DOMAIN, value=ascii_name, unicode_value=_to_unicode(ascii_name))
    if found.unicode_value:
        found.flags.append(f"internationalized domain name: {found.unicode_value}")
    if _special_suffix(ascii_name) is not None:
        if ascii_name in _SPECIAL_SUFFIXES and ascii_name != "localhost":
            raise IndicatorError("invalid", f"not a valid domain: `{ascii_name}` is only a top-level name")
        return found
    tld = ascii_name.rsplit(".", 1)[-1]
    if len(labels) < 2:
        raise IndicatorError(
            "invalid",
            f"not a valid domain: `{_short(ascii_name)}` has no top-level domain; "
            f"supported types: {SUPPORTED_TYPES_TEXT}",
        )
    suffix = _psl_icann().publicsuffix(ascii_name)
    if suffix is None:
        raise IndicatorError("unknown_tld", _unknown_tld_message(ascii_name, tld))
    if suffix == ascii_name:
        raise IndicatorError(
            "invalid",
            f"not a valid domain: `{ascii_name}` is a public suffix, not a domain someone registered",
        )
    if not as_url_host and (tld in _FILE_LIKE_TLDS_ANY or (tld in _FILE_LIKE_TLDS_BARE and ascii_name.count(".") == 1)):
        found.ambiguous = tld
    return found


def _unknown_tld_message(name: str, tld: str) -> str:
    message = f"not a valid domain: unknown TLD `{_short(tld, 63)}`"
    if tld in _FILE_EXTENSIONS:
        message += f"; `{_short(name)}` looks like a file name, and file names are not a supported IOC type"
    else:
        message += " (not in the IANA root zone / Public Suffix List)"
    return message + f". Supported types: {SUPPORTED_TYPES_TEXT}"


def _ambiguous_error(name: str, tld: str) -> IndicatorError:
    return IndicatorError(
        "ambiguous",
        f"`{name}` is ambiguous: it could be a domain (`.{tld}` is a real TLD) or a file name "
        f'(`.{tld}` is a common file extension). To look it up as a domain, pass ioc_type="domain"; '
        "file names are not a supported IOC type.",
    )


# URLs ---------------------------------------------------------------------------------------------


def _parse_schemeless_url(text: str) -> _Found:
    """``host/path`` is a URL with an assumed ``http://``; ``host/`` alone is just the host."""
    cut = min(i for i in (text.find(c) for c in "/?#") if i >= 0)
    host_part, rest = text[:cut], text[cut:]
    if not host_part:
        raise IndicatorError(
            "invalid",
            f"not an indicator: `{_short(text)}` looks like a path; supported: {SUPPORTED_TYPES_TEXT}",
        )
    if rest == "/":
        found = _detect(host_part)
        found.warnings.append("trailing `/` ignored")
        return found
    found = _parse_url("http://" + text)
    found.warnings.append("no scheme given; assumed `http://`")
    return found


def _parse_url(text: str) -> _Found:
    """Absolute URL: lowercase scheme and host, no credentials, no default port, path/query kept."""
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme not in _URL_SCHEMES:
        raise IndicatorError(
            "invalid",
            f"unsupported URL scheme `{_short(scheme, 20)}`; supported: {', '.join(sorted(_URL_SCHEMES))}",
        )
    cut = min([i for i in (rest.find(c) for c in "/?#") if i >= 0], default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    flags: list[str] = []
    if "@" in authority:
        authority = authority.rpartition("@")[2]
        flags.append("credentials in URL removed")
    host_text, port = _split_url_authority(authority)
    if not host_text:
        raise IndicatorError("invalid", f"not a valid URL: no host in `{_short(_mask_credentials(text))}`")
    host = _parse_url_host(host_text)
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    tail = _encode_whitespace(tail if tail.startswith("/") else "/" + tail)
    netloc = f"[{host.value}]" if host.type is IndicatorType.IPV6 else host.value
    value = f"{scheme}://{netloc}{f':{port}' if port else ''}{tail}"
    return _Found(
        type=IndicatorType.URL,
        value=value,
        port=port,
        host=host.value,
        host_type=host.type,
        unicode_value=host.unicode_value,
        warnings=host.warnings,
        flags=flags + host.flags,
    )


def _split_url_authority(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise IndicatorError("invalid", "not a valid URL: IPv6 host without closing `]`")
        host, rest = authority[: close + 1], authority[close + 1 :]
    else:
        host, sep, port_text = authority.partition(":")
        rest = sep + port_text
    if rest in ("", ":"):
        return host, None
    if not re.fullmatch(r":\d{1,5}", rest):
        raise IndicatorError("invalid", f"not a valid URL: bad port `{_short(rest[1:], 20)}`")
    return host, _port(rest[1:])


def _parse_url_host(host: str) -> _Found:
    if host.startswith("["):
        return _parse_ipv6(host[1:-1])
    if _DIGITS_AND_DOTS.fullmatch(host):
        return _parse_ipv4(host)
    return _parse_domain(host, as_url_host=True)


def _encode_whitespace(tail: str) -> str:
    """Percent-encode whitespace and control characters so the URL is one token and re-parses equal."""
    return re.sub(r"[\s\x00-\x1f\x7f]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), tail)


# --------------------------------------------------------------------------------------------------
# Step 6: policy
# --------------------------------------------------------------------------------------------------

# (network, label, globally routable). Most specific first; labels follow the IANA special-purpose
# address registries. Routable entries are flagged but still sent to external threat intelligence.
_IP_RANGES: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str, bool]] = [
    (ipaddress.ip_network(net), label, routable)
    for net, label, routable in [
        ("0.0.0.0/32", "unspecified (RFC 1122)", False),
        ("0.0.0.0/8", "this network (RFC 791)", False),
        ("10.0.0.0/8", "private (RFC 1918)", False),
        ("100.64.0.0/10", "shared address space / CGNAT (RFC 6598)", False),
        ("127.0.0.0/8", "loopback (RFC 1122)", False),
        ("169.254.0.0/16", "link-local (RFC 3927)", False),
        ("172.16.0.0/12", "private (RFC 1918)", False),
        ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)", False),
        ("192.0.2.0/24", "documentation (RFC 5737)", False),
        ("192.88.99.0/24", "6to4 relay anycast, deprecated (RFC 7526)", False),
        ("192.168.0.0/16", "private (RFC 1918)", False),
        ("198.18.0.0/15", "benchmarking (RFC 2544)", False),
        ("198.51.100.0/24", "documentation (RFC 5737)", False),
        ("203.0.113.0/24", "documentation (RFC 5737)", False),
        ("224.0.0.0/4", "multicast (RFC 5771)", False),
        ("255.255.255.255/32", "limited broadcast (RFC 919)", False),
        ("240.0.0.0/4", "reserved (RFC 1112)", False),
        ("::/128", "unspecified (RFC 4291)", False),
        ("::1/128", "loopback (RFC 4291)", False),
        ("::ffff:0:0/96", "IPv4-mapped (RFC 4291)", False),
        ("::/96", "IPv4-compatible, deprecated (RFC 4291)", False),
        ("64:ff9b::/96", "NAT64 well-known prefix (RFC 6052)", True),
        ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)", False),
        ("100::/64", "discard-only (RFC 6666)", False),
        ("2001:db8::/32", "documentation (RFC 3849)", False),
        ("3fff::/20", "documentation (RFC 9637)", False),
        ("2001::/32", "Teredo (RFC 4380)", True),
        ("2001:2::/48", "benchmarking (RFC 5180)", False),
        ("2001:10::/28", "ORCHID, deprecated (RFC 4843)", False),
        ("2001:20::/28", "ORCHIDv2 (RFC 7343)", False),
        ("2001::/23", "IETF protocol assignments (RFC 2928)", False),
        ("2002::/16", "6to4 (RFC 3056)", True),
        ("fc00::/7", "unique local address / ULA (RFC 4193)", False),
        ("fe80::/10", "link-local (RFC 4291)", False),
        ("fec0::/10", "site-local, deprecated (RFC 3879)", False),
        ("ff00::/8", "multicast (RFC 4291)", False),
    ]
]


@dataclass
class _Policy:
    flags: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skip: str | None = None
    known_benign: str | None = None


def _ip_policy(value: str) -> _Policy:
    """Flag special-purpose addresses; all but the routable ones are kept from external TI (C23)."""
    addr = ipaddress.ip_address(value)
    policy = _Policy()
    match = next(((label, ok) for net, label, ok in _IP_RANGES if addr in net), None)
    if match is None and not addr.is_global:
        match = ("reserved (IANA special-purpose registry)", False)
    if match is None and isinstance(addr, ipaddress.IPv6Address) and addr not in _GLOBAL_UNICAST_V6:
        match = ("reserved (outside 2000::/3 global unicast, RFC 4291)", False)
    if match is not None:
        label, routable = match
        policy.flags.append(label)
        if not routable:
            policy.skip = f"non-routable: {label}"
    if isinstance(addr, ipaddress.IPv6Address):
        teredo_client = addr.teredo[1] if addr.teredo else None
        embedded = addr.ipv4_mapped or teredo_client or addr.sixtofour or _nat64_v4(addr)
        if embedded is not None:
            policy.warnings.append(f"embeds IPv4 address {embedded}; look that up for the real host")
    return policy


_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _nat64_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _domain_policy(name: str) -> _Policy:
    policy = _Policy()
    special = _special_suffix(name)
    if special is not None:
        suffix, source, ti_allowed = special
        label = f"special-use TLD `.{suffix}` ({source})"
        policy.flags.append(label)
        if not ti_allowed:
            policy.skip = f"special-use: `.{suffix}` ({source})"
    benign = _domain_benign(name)
    if benign is not None:
        reason, customer = benign
        if customer:
            policy.flags.append(f"customer-controlled name on shared infrastructure: {reason}; not treated as benign")
        else:
            policy.known_benign = reason
    return policy


def _apply_policy(found: _Found) -> _Policy:
    if found.type.family == "ip":
        policy = _ip_policy(found.value)
        policy.known_benign = _benign_data().ips.get(found.value)
    elif found.type is IndicatorType.DOMAIN:
        policy = _domain_policy(found.value)
    elif found.type is IndicatorType.URL:
        policy = _url_policy(found)
    else:
        policy = _Policy(known_benign=_benign_data().hashes.get(found.value))
    if policy.known_benign:
        policy.flags.append(f"known benign: {policy.known_benign}")
    return policy


def _url_policy(found: _Found) -> _Policy:
    """A URL inherits its host's routability; a benign host does not make the URL benign (payloads are
    hosted on GitHub and cloud storage), so that only becomes a flag."""
    assert found.host is not None and found.host_type is not None
    if found.host_type.family == "ip":
        host_policy = _ip_policy(found.host)
        host_benign = _benign_data().ips.get(found.host)
    else:
        host_policy = _domain_policy(found.host)
        host_benign = host_policy.known_benign
    policy = _Policy(
        flags=[f"host: {flag}" for flag in host_policy.flags],
        warnings=host_policy.warnings,
    )
    if host_policy.skip:
        kind, _, label = host_policy.skip.partition(": ")
        policy.skip = f"{kind} host: {label}"
    if host_benign:
        policy.flags.append(f"host is known benign: {host_benign}; the URL itself is not")
    return policy


# --------------------------------------------------------------------------------------------------
# Known-benign data
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BenignData:
    ips: dict[str, str]
    hashes: dict[str, str]
    domains: dict[str, str]


@cache
def _benign_data() -> _BenignData:
    """Load ``data/benign.json`` once. Values are normalized here so the file can be edited by hand."""
    text = resources.files("ioc_workflows_mcp").joinpath("data/benign.json").read_text(encoding="utf-8")
    data = json.loads(text)
    ips = {_ip_text(ipaddress.ip_address(e["value"])): e["reason"] for e in data.get("ips", [])}
    hashes = {e["value"].lower(): e["reason"] for e in data.get("hashes", [])}
    domains = {e["value"].lower().rstrip("."): e["reason"] for e in data.get("domains", [])}
    return _BenignData(ips=ips, hashes=hashes, domains=domains)


def _domain_benign(name: str) -> tuple[str, bool] | None:
    """(reason, customer_controlled) when ``name`` is a listed apex or under one.

    A name under a Public Suffix List *private* suffix inside the apex (``x.s3.amazonaws.com``,
    ``x.cloudfront.net``) belongs to a customer of the platform, so it is flagged but not benign.
    """
    domains = _benign_data().domains
    labels = name.split(".")
    for i in range(len(labels) - 1):
        apex = ".".join(labels[i:])
        if apex in domains:
            if name == apex:
                return domains[apex], False
            suffix = _psl_full().publicsuffix(name) or ""
            customer = suffix == apex or suffix.endswith("." + apex)
            return domains[apex], customer
    return None


def known_benign_reason(value: str) -> str | None:
    """Quick check of an IP, domain or hash taken from upstream data (already clean, not defanged).

    Cheaper than :func:`parse_indicator`: no refang, no TLD validation. Returns the reason or ``None``.
    """
    if not isinstance(value, str):
        return None
    text = value.strip().lower().rstrip(".")
    data = _benign_data()
    if _HEX.fullmatch(text):
        return data.hashes.get(text)
    try:
        addr = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        return data.ips.get(_ip_text(addr))
    try:
        name = ".".join(_idna_label(label, text) for label in text.split("."))
    except IndicatorError:
        return None
    benign = _domain_benign(name)
    return benign[0] if benign and not benign[1] else None


def is_benign_infrastructure(ind_or_value: Indicator | str) -> str | None:
    """Reason when the indicator is known benign or shared infrastructure (pivots stop expanding there).

    URLs are never benign as a whole (see the URL policy); unparsable input returns ``None``.
    """
    if isinstance(ind_or_value, Indicator):
        return ind_or_value.known_benign
    try:
        return Indicator.parse(ind_or_value).known_benign
    except IndicatorError:
        return known_benign_reason(ind_or_value) if isinstance(ind_or_value, str) else None


# --------------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------------


def _parse(value: object, hint: TypeHint | None) -> Indicator:
    raw, text, warnings = _prepare(value)
    text = _unwrap(text, warnings)
    refanged = _unwrap(_refang(text), warnings)
    if not refanged:
        raise IndicatorError("empty", "empty or invalid IOC value: nothing left after removing quotes/brackets")
    found = _detect_for_hint(refanged, hint)
    if len(found.value) > MAX_INPUT_LENGTH:  # percent-encoding can grow a URL; the value must re-parse
        raise IndicatorError(
            "too_long", f"normalized IOC value is {len(found.value)} characters; the limit is {MAX_INPUT_LENGTH}"
        )
    policy = _apply_policy(found)
    return Indicator(
        raw=_mask_credentials(raw) if found.type is IndicatorType.URL else raw,
        value=found.value,
        type=found.type,
        defanged=refanged != text,
        port=found.port,
        host=found.host,
        host_type=found.host_type,
        unicode_value=found.unicode_value,
        flags=_dedupe(found.flags + policy.flags),
        warnings=_dedupe(warnings + found.warnings + policy.warnings),
        external_ti_allowed=policy.skip is None,
        ti_skip_reason=policy.skip,
        known_benign=policy.known_benign,
    )


def _detect_for_hint(text: str, hint: TypeHint | None) -> _Found:
    """Detect the type, then hold it against the hint: a hint settles ambiguity but never changes a type.
    (A bare host given as a URL is a mismatch too: turning it into ``http://host/`` would query a different
    object than the one the caller named.)"""
    found = _detect(text)
    if hint is None:
        if found.ambiguous:
            raise _ambiguous_error(found.value, found.ambiguous)
        return found
    if not _hint_accepts(hint, found.type):
        raise _mismatch(text, hint, found)
    return found


def _mismatch(text: str, hint: TypeHint, found: _Found) -> IndicatorError:
    looks = found.type.value
    if found.ambiguous:
        looks = "a domain or a file name"
    elif found.type is IndicatorType.URL:
        looks = f"a url (host `{found.host}`)"
    return IndicatorError(
        "type_mismatch",
        f"`{_short(text)}` was given as {_hint_label(hint)} but looks like {looks}; "
        f'pass ioc_type="{found.type.value}" or leave ioc_type out to detect the type',
    )


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
