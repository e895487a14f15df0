"""AK/SK request signing for Huawei Cloud APIs ("SDK-HMAC-SHA256"), standard library only.

The algorithm, as the official SDK signer (huaweicloudsdkcore 3.1.219) implements it and the gateway checks:

1. Headers present before signing: the caller's headers, ``X-Sdk-Date`` (UTC ``%Y%m%dT%H%M%SZ``; a value
   the caller already set is honoured), ``X-Project-Id`` (when a project ID is given), ``X-Security-Token``
   (temporary credentials) and ``Host`` (the URL's ``host[:port]`` unless the caller set one). When
   ``Content-Type`` is set and is neither ``application/json*`` nor ``application/bson*``,
   ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` is added and replaces the body hash (as the SDK does).
2. The canonical request is six lines joined by ``\\n``:

   - the method in upper case;
   - the canonical URI: percent-decode the whole path, split it on ``/``, re-encode every segment keeping
     only ``A-Za-z0-9-_.~`` (upper-case hex, UTF-8 bytes), join with ``/`` and end with ``/``. The
     trailing slash is only in the signed form, never on the wire;
   - the canonical query: ``(key, value)`` pairs sorted by the raw (decoded) key, then the raw value, each
     side encoded like a path segment and written ``k=v``, joined by ``&``. Booleans are ``true``/``false``.
     The same string replaces the URL's query on the wire;
   - the canonical headers: ``lowercase-name:trimmed-value`` + ``\\n`` for each signed header, by name;
   - the signed header names: every header whose name has no ``_``, lower case, sorted, joined by ``;``;
   - the lower-case hex SHA-256 of the exact body bytes (of the empty string when there is no body).

3. String to sign: ``SDK-HMAC-SHA256\\n{X-Sdk-Date}\\n{hex sha256 of the canonical request (UTF-8)}``.
4. Signature: hex HMAC-SHA256 of the string to sign, keyed with the secret key (no key derivation).
5. ``Authorization: SDK-HMAC-SHA256 Access={AK}, SignedHeaders={names}, Signature={hex}``.

Two choices where the SDK is looser than a server can be: query values are compared as text when sorting
(the gateway only ever sees text, so ``[9, 10]`` sorts as ``"10" < "9"``; the SDK would sort the ints
numerically and the gateway would then reject the request), and the query part of a URL is decoded with
RFC 3986 rules (``+`` stays a plus; this signer never writes a raw ``+``, it encodes it as ``%2B``).

The same functions check a request on the server side (the ECS emulator uses them): `parse_authorization`
reads the header and `compute_signature` recomputes the signature over the headers named in it.

The secret key never leaves ``hmac``; the security token appears only in the ``X-Security-Token`` header
and in the canonical request (it is a signed header). `SignedRequest`'s repr shows neither the headers nor
the canonical request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit, urlunsplit

ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

HEADER_AUTHORIZATION = "Authorization"
HEADER_SDK_DATE = "X-Sdk-Date"
HEADER_HOST = "Host"
HEADER_PROJECT_ID = "X-Project-Id"
HEADER_SECURITY_TOKEN = "X-Security-Token"  # noqa: S105 (a header name)
HEADER_CONTENT_SHA256 = "X-Sdk-Content-Sha256"

_SIGNED_BODY_CONTENT_TYPES = ("application/json", "application/bson")
_SDK_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")
_AUTHORIZATION_RE = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=(?P<access>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*$"
)


class SigningError(ValueError):
    """The inputs cannot be signed (or an incoming request cannot be checked): the message says why."""


@dataclass(frozen=True)
class SignedRequest:
    """The result of `sign_request`: what to send, plus the intermediate values (for tests and debugging)."""

    url: str
    headers: dict[str, str] = field(repr=False)
    canonical_request: str = field(repr=False)
    string_to_sign: str = field(repr=False)
    signature: str = field(repr=False)
    signed_headers: str

    def wire_headers(self) -> dict[str, bytes]:
        """Headers with UTF-8 encoded values, ready for httpx (which would refuse non-ASCII `str` values)."""
        return {name: value.encode("utf-8") for name, value in self.headers.items()}


@dataclass(frozen=True)
class SignatureParts:
    canonical_request: str
    string_to_sign: str
    signature: str


@dataclass(frozen=True)
class ParsedAuthorization:
    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def encode_component(text: str) -> str:
    """Percent-encode one path segment, query key or query value: keep ``A-Za-z0-9-_.~``, UTF-8, upper hex."""
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """The signed form of a wire path: decoded, re-encoded per segment, always ending with ``/``."""
    segments = unquote(path or "/").split("/")
    encoded = "/".join(encode_component(segment) for segment in segments)
    return encoded if encoded.endswith("/") else encoded + "/"


def query_value_text(value: object) -> str:
    """How a query value is written: booleans as ``true``/``false``, everything else with `str`."""
    if value is None:
        raise SigningError("query parameter values must not be None; leave the parameter out instead")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def normalise_query(pairs: Iterable[tuple[str, object]]) -> list[tuple[str, str]]:
    """Flatten ``(key, value)`` pairs to text; a list or tuple value stands for the key repeated."""
    flat: list[tuple[str, str]] = []
    for key, value in pairs:
        if isinstance(value, list | tuple):
            flat.extend((str(key), query_value_text(item)) for item in value)
        else:
            flat.append((str(key), query_value_text(value)))
    return flat


def canonical_query_string(pairs: Iterable[tuple[str, object]]) -> str:
    """Sorted by raw key then raw value, both encoded, ``k=v`` joined by ``&`` (also the wire query)."""
    ordered = sorted(normalise_query(pairs))
    return "&".join(f"{encode_component(key)}={encode_component(value)}" for key, value in ordered)


def parse_query_string(query: str) -> list[tuple[str, str]]:
    """Decode a wire query string into raw pairs (RFC 3986: ``+`` is a plus, a key without ``=`` has "")."""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def signed_header_names(header_names: Iterable[str]) -> list[str]:
    """Every header is signed except names that contain ``_``; lower case, sorted."""
    return sorted({name.lower() for name in header_names if "_" not in name})


def _lookup(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that also works on plain dicts."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def canonical_headers(headers: Mapping[str, str], names: Sequence[str]) -> str:
    lines = []
    for name in names:
        value = _lookup(headers, name)
        if value is None:
            raise SigningError(f"header {name!r} is listed as signed but is not present in the request")
        lines.append(f"{name}:{value.strip()}\n")
    return "".join(lines)


def _body_bytes(body: bytes | str | None) -> bytes:
    if body is None:
        return b""
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def payload_hash(body: bytes | str | None, headers: Mapping[str, str]) -> str:
    """Hex SHA-256 of the body; an empty body always hashes as empty; ``X-Sdk-Content-Sha256`` overrides."""
    data = _body_bytes(body)
    if not data:
        return EMPTY_BODY_SHA256
    declared = _lookup(headers, HEADER_CONTENT_SHA256)
    if declared:
        return declared
    return hashlib.sha256(data).hexdigest()


def parse_sdk_date(value: str) -> datetime:
    """Parse an ``X-Sdk-Date`` value (UTC, ``%Y%m%dT%H%M%SZ``) into an aware datetime."""
    text = value.strip()
    match = _SDK_DATE_RE.match(text)
    try:
        if match:  # the canonical form, parsed without strptime (servers check every request)
            year, month, day, hour, minute, second = (int(part) for part in match.groups())
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        return datetime.strptime(text, SDK_DATE_FORMAT).replace(tzinfo=UTC)  # lenient forms, as the SDK
    except ValueError:
        raise SigningError(
            f"X-Sdk-Date {value!r} is not in the form YYYYMMDDTHHMMSSZ (UTC), e.g. 20240501T120000Z"
        ) from None


def format_sdk_date(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(SDK_DATE_FORMAT)


def build_canonical_request(
    method: str,
    path: str,
    query_pairs: Iterable[tuple[str, object]],
    headers: Mapping[str, str],
    body: bytes | str | None,
    signed_names: Sequence[str],
) -> str:
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query_string(query_pairs),
            canonical_headers(headers, signed_names),
            ";".join(signed_names),
            payload_hash(body, headers),
        )
    )


def build_string_to_sign(canonical_request: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    date = sdk_date.strip()
    if not _SDK_DATE_RE.match(date):  # the SDK re-formats what it parsed
        date = format_sdk_date(parse_sdk_date(date))
    return f"{ALGORITHM}\n{date}\n{digest}"


def hmac_signature(string_to_sign: str, secret_key: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def compute_signature(
    method: str,
    path: str,
    query_pairs: Iterable[tuple[str, object]],
    headers: Mapping[str, str],
    body: bytes | str | None,
    secret_key: str,
    signed_names: Sequence[str],
) -> SignatureParts:
    """Recompute the signature of a request over the given signed header names (server-side check).

    ``path`` is the wire path (still percent-encoded), ``query_pairs`` the decoded query pairs (see
    `parse_query_string`), ``headers`` a case-insensitive or plain mapping that must contain ``X-Sdk-Date``.
    """
    sdk_date = _lookup(headers, HEADER_SDK_DATE)
    if sdk_date is None:
        raise SigningError("the request has no X-Sdk-Date header")
    canonical = build_canonical_request(method, path, query_pairs, headers, body, signed_names)
    to_sign = build_string_to_sign(canonical, sdk_date)
    return SignatureParts(canonical, to_sign, hmac_signature(to_sign, secret_key))


def authorization_value(access_key: str, signed_names: Sequence[str], signature: str) -> str:
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed_names)}, Signature={signature}"


def parse_authorization(value: str) -> ParsedAuthorization:
    """Read ``SDK-HMAC-SHA256 Access=..., SignedHeaders=a;b, Signature=hex``; `SigningError` if malformed."""
    match = _AUTHORIZATION_RE.match(value.strip())
    if match is None:
        raise SigningError(
            "Authorization is not 'SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<a;b;c>, Signature=<hex>'"
        )
    names = tuple(match["signed"].split(";"))
    if any(not name or name != name.lower() for name in names):
        raise SigningError("SignedHeaders must be lower-case header names separated by ';'")
    return ParsedAuthorization(match["access"], names, match["signature"].lower())


def _set_header(headers: dict[str, str], name: str, value: str) -> None:
    """Set a header, replacing any spelling of the same name."""
    for existing in [key for key in headers if key.lower() == name.lower()]:
        del headers[existing]
    headers[name] = value


def _prepare_headers(
    caller_headers: Mapping[str, str],
    *,
    host: str,
    sdk_date: str | None,
    project_id: str | None,
    security_token: str | None,
) -> dict[str, str]:
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in caller_headers.items():
        if name.lower() in seen:
            raise SigningError(f"header {name!r} is given twice (header names are case-insensitive)")
        seen.add(name.lower())
        headers[name] = str(value).strip()

    content_type = _lookup(headers, "Content-Type")
    if content_type and not content_type.startswith(_SIGNED_BODY_CONTENT_TYPES):
        _set_header(headers, HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD)
    if sdk_date is not None:
        _set_header(headers, HEADER_SDK_DATE, format_sdk_date(parse_sdk_date(sdk_date)))
    elif (preset := _lookup(headers, HEADER_SDK_DATE)) is not None:
        parse_sdk_date(preset)  # honoured as given, but it must be a valid date
    else:
        headers[HEADER_SDK_DATE] = format_sdk_date(datetime.now(UTC))
    if project_id:
        _set_header(headers, HEADER_PROJECT_ID, project_id)
    if security_token is not None:
        _set_header(headers, HEADER_SECURITY_TOKEN, security_token)
    if _lookup(headers, HEADER_HOST) is None:
        headers[HEADER_HOST] = host
    return headers


def sign_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | str | None,
    access_key: str,
    secret_key: str,
    security_token: str | None = None,
    project_id: str | None = None,
    sdk_date: str | None = None,
    query: Sequence[tuple[str, object]] | None = None,
) -> SignedRequest:
    """Sign a request the way the official SDK does (see the module docstring).

    ``url`` is the full URL with the path as sent on the wire (path parameters already percent-encoded);
    a query it carries is decoded and merged with ``query``. ``sdk_date`` fixes ``X-Sdk-Date`` (it wins over
    a header the caller set; without either the current UTC time is used). ``body`` must be the exact bytes
    that will be sent (a ``str`` is sent as UTF-8).
    """
    if not access_key:
        raise SigningError("the access key (AK) is empty")
    if not secret_key:
        raise SigningError("the secret key (SK) is empty")
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise SigningError(f"URL {url!r} must be absolute, like https://ecs.example.com/v1/...")
    path = parts.path or "/"
    pairs = parse_query_string(parts.query) + normalise_query(query or ())

    all_headers = _prepare_headers(
        headers, host=parts.netloc, sdk_date=sdk_date, project_id=project_id, security_token=security_token
    )
    names = signed_header_names(all_headers)
    signature = compute_signature(method, path, pairs, all_headers, body, secret_key, names)
    all_headers[HEADER_AUTHORIZATION] = authorization_value(access_key, names, signature.signature)

    wire_query = canonical_query_string(pairs)
    final_url = urlunsplit((parts.scheme, parts.netloc, path, wire_query, ""))
    return SignedRequest(
        url=final_url,
        headers=all_headers,
        canonical_request=signature.canonical_request,
        string_to_sign=signature.string_to_sign,
        signature=signature.signature,
        signed_headers=";".join(names),
    )
