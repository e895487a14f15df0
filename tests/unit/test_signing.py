"""The SDK-HMAC-SHA256 signer: every recorded vector, and the general rules checked against the official SDK.

The official SDK signer is imported here only, as an oracle; the operator never imports the SDK.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest

from ecs_reinstall.cloud import signing
from ecs_reinstall.cloud.signing import SigningError, sign_request

VECTORS_FILE = Path(__file__).resolve().parents[1] / "data" / "signing_vectors.json"
VECTORS = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]

AK = "AKEXAMPLE0123456789A"
SK = "SKexample0123456789abcdefghijklmnopqrstuv"
PROJECT = "0123456789abcdef0123456789abcdef"
DATE = "20240501T120000Z"


def _vector_headers_in(vector: dict) -> dict[str, str]:
    """Caller headers as the schema describes them.

    A direct vector's headers_in are the caller's headers (notes in parentheses are not headers). A
    client_capture vector's headers were produced by the SDK client itself: they are headers_out without what
    the signer adds (Host, X-Project-Id, X-Security-Token, Authorization).
    """
    if vector["kind"] == "direct":
        return {k: v for k, v in vector["headers_in"].items() if not k.startswith("(")}
    added = {"Host", "X-Project-Id", "X-Security-Token", "Authorization"}
    return {k: v for k, v in vector["expected"]["headers_out"].items() if k not in added}


def _sign_vector(vector: dict) -> signing.SignedRequest:
    return sign_request(
        vector["method"],
        f"https://{vector['host']}{vector['path']}",
        headers=_vector_headers_in(vector),
        body=vector["body"],
        access_key=vector["ak"],
        secret_key=vector["sk"],
        security_token=vector["security_token"],
        project_id=vector["project_id"],
        sdk_date=vector["sdk_date"],
        query=[tuple(pair) for pair in vector["query"]],
    )


def test_vectors_file_has_both_kinds() -> None:
    assert {vector["kind"] for vector in VECTORS} == {"direct", "client_capture"}
    assert len(VECTORS) >= 5


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_reproduced_exactly(vector: dict) -> None:
    signed = _sign_vector(vector)
    expected = vector["expected"]
    assert signed.headers == expected["headers_out"]
    assert signed.url == expected["url_out"]
    assert signed.canonical_request == expected["canonical_request"]
    assert signed.string_to_sign == expected["string_to_sign"]
    assert signed.signature == expected["signature"]
    assert signed.signed_headers == expected["signed_headers"]
    assert signed.headers["Authorization"] == expected["authorization"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_verifies_from_the_wire(vector: dict) -> None:
    """What the emulator does: recompute the signature from the URL and headers as received."""
    signed = _sign_vector(vector)
    parsed = signing.parse_authorization(signed.headers["Authorization"])
    wire = urlsplit(signed.url)
    parts = signing.compute_signature(
        vector["method"],
        wire.path,
        signing.parse_query_string(wire.query),
        signed.headers,
        vector["body"],
        vector["sk"],
        parsed.signed_headers,
    )
    assert parsed.access_key == vector["ak"]
    assert parts.canonical_request == vector["expected"]["canonical_request"]
    assert parts.signature == vector["expected"]["signature"] == parsed.signature


# --- the general rules, each on a small case -------------------------------------------------------------


def _sign(
    method: str = "GET", url: str = "https://ecs.example.com/v1/p/jobs/j", **kwargs
) -> signing.SignedRequest:
    kwargs.setdefault("headers", {"Content-Type": "application/json"})
    kwargs.setdefault("body", None)
    kwargs.setdefault("sdk_date", DATE)
    return sign_request(method, url, access_key=AK, secret_key=SK, **kwargs)


def _lines(signed: signing.SignedRequest) -> list[str]:
    return signed.canonical_request.split("\n")


def test_canonical_uri_re_encodes_each_segment_and_adds_the_trailing_slash_only_when_signing() -> None:
    signed = _sign(url="https://h.example/v1/a%20b/c+d/%7Etilde/%c3%a9/x*y")
    assert _lines(signed)[1] == "/v1/a%20b/c%2Bd/~tilde/%C3%A9/x%2Ay/"
    assert urlsplit(signed.url).path == "/v1/a%20b/c+d/%7Etilde/%c3%a9/x*y"


def test_path_that_already_ends_with_a_slash_keeps_a_single_one() -> None:
    assert _lines(_sign(url="https://h.example/v1/servers/"))[1] == "/v1/servers/"
    assert _lines(_sign(url="https://h.example"))[1] == "/"


def test_query_sorted_by_raw_key_then_raw_value() -> None:
    signed = _sign(query=[("b", "2"), ("B", "1"), ("a", "z"), ("a", "y"), ("é", "1"), ("~", "1")])
    # raw order: "B" < "a" < "b" < "~" < "é" (code points); encoded "é" would sort first.
    assert _lines(signed)[2] == "B=1&a=y&a=z&b=2&~=1&%C3%A9=1"
    assert signed.url.endswith("?B=1&a=y&a=z&b=2&~=1&%C3%A9=1")


def test_query_booleans_ints_and_lists() -> None:
    assert _lines(_sign(query=[("flag", True), ("off", False), ("n", 3), ("l", ["b", "a"])]))[2] == (
        "flag=true&l=a&l=b&n=3&off=false"
    )


def test_query_values_sort_as_text_because_the_gateway_only_sees_text() -> None:
    assert _lines(_sign(query=[("a", 9), ("a", 10)]))[2] == "a=10&a=9"


def test_query_in_the_url_is_decoded_and_merged() -> None:
    signed = _sign(url="https://h.example/p?z=1&plus=a+b&sp=a%20b&empty", query=[("a", "x")])
    assert _lines(signed)[2] == "a=x&empty=&plus=a%2Bb&sp=a%20b&z=1"


def test_none_query_value_is_refused() -> None:
    with pytest.raises(SigningError, match="None"):
        _sign(query=[("a", None)])


def test_headers_with_underscore_are_sent_but_not_signed_and_values_are_trimmed() -> None:
    signed = _sign(headers={"Content-Type": " application/json ", "X_Trace_Id": "abc", "X-Empty": "  "})
    assert signed.signed_headers == "content-type;host;x-empty;x-sdk-date"
    assert signed.headers["X_Trace_Id"] == "abc"
    assert signed.headers["Content-Type"] == "application/json"
    assert (
        "content-type:application/json\nhost:ecs.example.com\nx-empty:\nx-sdk-date:"
        in signed.canonical_request
    )


def test_non_ascii_header_value_is_signed_as_utf8() -> None:
    signed = _sign(headers={"X-Label": "café"})
    assert "x-label:café\n" in signed.canonical_request
    assert signed.wire_headers()["X-Label"] == "café".encode()


def test_body_hash_empty_str_and_bytes() -> None:
    assert _lines(_sign(body=None))[-1] == signing.EMPTY_BODY_SHA256
    assert _lines(_sign(body=b""))[-1] == signing.EMPTY_BODY_SHA256
    assert (
        _lines(_sign(method="POST", body='{"é": 1}'))[-1] == hashlib.sha256('{"é": 1}'.encode()).hexdigest()
    )
    assert _lines(_sign(method="POST", body=b"\x00\xff"))[-1] == hashlib.sha256(b"\x00\xff").hexdigest()


def test_non_json_content_type_uses_unsigned_payload_like_the_sdk() -> None:
    signed = _sign(method="PUT", headers={"Content-Type": "application/octet-stream"}, body=b"data")
    assert signed.headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert _lines(signed)[-1] == "UNSIGNED-PAYLOAD"


def test_sdk_date_from_the_caller_is_honoured_and_the_argument_wins() -> None:
    honoured = sign_request(
        "GET",
        "https://h.example/",
        headers={"x-sdk-date": "20230102T030405Z"},
        body=None,
        access_key=AK,
        secret_key=SK,
    )
    assert honoured.headers["x-sdk-date"] == "20230102T030405Z"
    assert honoured.string_to_sign.split("\n")[1] == "20230102T030405Z"
    forced = _sign(headers={"X-Sdk-Date": "20230102T030405Z"})
    assert forced.headers["X-Sdk-Date"] == DATE


def test_sdk_date_defaults_to_now_in_utc() -> None:
    signed = sign_request("GET", "https://h.example/", headers={}, body=None, access_key=AK, secret_key=SK)
    date = signing.parse_sdk_date(signed.headers["X-Sdk-Date"])
    assert abs((date - signing.datetime.now(signing.UTC)).total_seconds()) < 5


def test_bad_inputs_get_specific_errors() -> None:
    with pytest.raises(SigningError, match="YYYYMMDDTHHMMSSZ"):
        _sign(sdk_date="2024-05-01 12:00")
    with pytest.raises(SigningError, match="YYYYMMDDTHHMMSSZ"):
        _sign(headers={"X-Sdk-Date": "20241301T120000Z"}, sdk_date=None)
    with pytest.raises(SigningError, match="twice"):
        _sign(headers={"X-A": "1", "x-a": "2"})
    with pytest.raises(SigningError, match="absolute"):
        _sign(url="/v1/p/jobs/j")
    with pytest.raises(SigningError, match="secret key"):
        sign_request("GET", "https://h.example/", headers={}, body=None, access_key=AK, secret_key="")


def test_parse_authorization() -> None:
    parsed = signing.parse_authorization(_sign().headers["Authorization"])
    assert parsed.access_key == AK
    assert parsed.signed_headers == ("content-type", "host", "x-sdk-date")
    assert len(parsed.signature) == 64
    for bad in (
        "",
        "Basic abc",
        "SDK-HMAC-SHA256 Access=AK, Signature=00",
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=Host, Signature=00",
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=xyz",
    ):
        with pytest.raises(SigningError):
            signing.parse_authorization(bad)


def test_compute_signature_needs_every_signed_header() -> None:
    with pytest.raises(SigningError, match="x-project-id"):
        signing.compute_signature(
            "GET", "/", [], {"X-Sdk-Date": DATE}, None, SK, ["x-project-id", "x-sdk-date"]
        )


def test_secrets_never_in_repr() -> None:
    signed = _sign(security_token="TOKEN-SECRET-VALUE")
    text = repr(signed) + str(signed)
    for secret in (SK, "TOKEN-SECRET-VALUE", signed.signature):
        assert secret not in text
    assert SK not in signed.canonical_request + signed.string_to_sign + json.dumps(signed.headers)


# --- property-style comparison with the official SDK signer ----------------------------------------------

_PATH_ALPHABET = "abcXYZ019-_.~ /+:@!$&'()*,;=%é中😀"
_QUERY_KEYS = ["name", "Name", "NAME", "status", "a b", "k/e", "é", "~x", "limit", "z_z"]
_HEADER_NAMES = ["X-Custom", "X_Custom_Id", "x-lower", "X-Mixed-Case", "Accept", "X-Trace_Id"]


def _random_segment(rng: random.Random) -> str:
    return "".join(rng.choice(_PATH_ALPHABET) for _ in range(rng.randint(0, 8)))


def _random_wire_path(rng: random.Random) -> str:
    """A path as a client puts it on the wire: segments percent-encoded, some reserved chars left as is."""
    segments = [_random_segment(rng) for _ in range(rng.randint(1, 5))]
    safe = rng.choice(["", ":@!$'()*,;=+", "~"])
    wire = "/" + "/".join(quote(segment, safe=safe) for segment in segments)
    return wire + ("/" if rng.random() < 0.2 else "")


def _random_query(rng: random.Random) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = []
    for key in rng.sample(_QUERY_KEYS, rng.randint(0, 5)):
        if rng.random() < 0.3:  # duplicated key: text values only (the SDK cannot sort mixed types)
            pairs.extend((key, _random_segment(rng)) for _ in range(rng.randint(2, 3)))
        else:
            pairs.append((key, rng.choice([_random_segment(rng), rng.randint(0, 500), True, False])))
    rng.shuffle(pairs)
    return pairs


def _random_headers(rng: random.Random) -> dict[str, str]:
    headers = {
        "Content-Type": rng.choice(["application/json", "application/json;charset=UTF-8", "text/plain"])
    }
    for name in rng.sample(_HEADER_NAMES, rng.randint(0, 4)):
        headers[name] = rng.choice(["  padded  ", "value", "café", "", "a,b;c=d"])
    return headers


def _sdk_sign(method, path, query, headers, body, token) -> tuple[dict[str, bytes], str]:
    credentials = BasicCredentials(AK, SK, PROJECT)
    if token is not None:
        credentials = credentials.with_security_token(token)
    request = SdkRequest(
        method=method,
        schema="https",
        host="ecs.example.com:8443",
        resource_path=path,
        query_params=list(query),
        header_params={**headers, "X-Sdk-Date": DATE},
        body=body,
    )
    credentials.sign_request(request)
    # The SDK hands requests latin-1 views of the UTF-8 bytes; compare bytes.
    return {k: str(v).encode("latin-1") for k, v in request.header_params.items()}, request.uri


@pytest.mark.parametrize("seed", range(200))
def test_matches_official_sdk_signer(seed: int) -> None:
    rng = random.Random(seed)
    method = rng.choice(["GET", "POST", "put", "DELETE"])
    path = _random_wire_path(rng)
    query = _random_query(rng)
    headers = _random_headers(rng)
    body = rng.choice([None, "", '{"os-reinstall": {"adminpass": "Pa$$w0rd-é"}}', b"\x00\x01raw"])
    token = rng.choice([None, "tok+en/=="])

    sdk_headers, sdk_uri = _sdk_sign(method, path, query, headers, body, token)
    ours = sign_request(
        method,
        f"https://ecs.example.com:8443{path}",
        headers=headers,
        body=body,
        access_key=AK,
        secret_key=SK,
        security_token=token,
        project_id=PROJECT,
        sdk_date=DATE,
        query=query,
    )
    assert ours.wire_headers() == sdk_headers
    assert ours.url == f"https://ecs.example.com:8443{sdk_uri}"
