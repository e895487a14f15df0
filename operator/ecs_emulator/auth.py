"""The API gateway's AK/SK check, reusing the operator's signer to recompute signatures.

Order of checks (each failure is a 401 gateway error, see `errors`): an ``Authorization`` header in the
``SDK-HMAC-SHA256`` form; a well-formed ``X-Sdk-Date`` within ``max_clock_skew_seconds`` (15 minutes) of the
gateway's time (``now``: the real time plus the configured ``clock_offset_seconds``; ``APIGW.0303`` otherwise); a known access key; ``host`` and ``x-sdk-date`` among the signed
headers; the security token (a temporary AK needs its own token, signed; a permanent AK accepts none unless
``accept_any_security_token``); and finally the signature itself, recomputed over the request as received.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping

from ecs_emulator.errors import GatewayError, auth_failure
from ecs_emulator.state import Credential
from ecs_reinstall.cloud import signing


def authenticate(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, Credential],
    max_skew_seconds: float,
    accept_any_security_token: bool = False,
    now: float | None = None,
) -> Credential:
    """Return the credential that signed this request, or raise the gateway's 401 error."""
    authorization = headers.get("Authorization")
    if not authorization:
        raise auth_failure("the request has no Authorization header (AK/SK signing is required)")
    try:
        parsed = signing.parse_authorization(authorization)
    except signing.SigningError as error:
        raise auth_failure(str(error)) from None

    sdk_date = headers.get(signing.HEADER_SDK_DATE)
    if not sdk_date:
        raise auth_failure("the request has no X-Sdk-Date header")
    try:
        signed_at = signing.parse_sdk_date(sdk_date).timestamp()
    except signing.SigningError as error:
        raise auth_failure(str(error)) from None
    skew = abs((time.time() if now is None else now) - signed_at)
    if skew > max_skew_seconds:
        raise GatewayError(
            401,
            "APIGW.0303",
            f"Incorrect app authentication information: the signature expired: X-Sdk-Date {sdk_date} is "
            f"{int(skew)} s away from the server time (limit {int(max_skew_seconds)} s); "
            "the signature is older than 15 minutes",
        )

    credential = credentials.get(parsed.access_key)
    if credential is None:
        raise auth_failure(f"ak {parsed.access_key} not exist")
    for required in ("host", "x-sdk-date"):
        if required not in parsed.signed_headers:
            raise auth_failure(f"SignedHeaders must include {required}")

    token = headers.get(signing.HEADER_SECURITY_TOKEN)
    if token is not None and "x-security-token" not in parsed.signed_headers:
        raise auth_failure("X-Security-Token must be signed (listed in SignedHeaders)")
    if credential.security_token is not None:
        if token is None:
            raise auth_failure("this AK is temporary: the request needs its X-Security-Token")
        if not hmac.compare_digest(token.encode(), credential.security_token.encode()):
            raise auth_failure("the security token is invalid or expired for this AK")
    elif token is not None and not accept_any_security_token:
        raise auth_failure("the security token is invalid: this AK is not a temporary credential")

    try:
        expected = signing.compute_signature(
            method,
            raw_path,
            signing.parse_query_string(raw_query),
            headers,
            body,
            credential.secret_key,
            parsed.signed_headers,
        )
    except signing.SigningError as error:
        raise auth_failure(str(error)) from None
    if not hmac.compare_digest(expected.signature, parsed.signature):
        raise auth_failure("verify aksk signature fail")
    return credential
