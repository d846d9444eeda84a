"""SASL/PLAIN on a SASL_PLAINTEXT listener: SaslHandshake (17) and SaslAuthenticate (36).

On a `listeners = "SASL_PLAINTEXT://..."` listener a client must authenticate before
anything but ApiVersions: SaslHandshake v1 names the mechanism (PLAIN, the only one;
another gets UNSUPPORTED_SASL_MECHANISM and the list), then SaslAuthenticate carries
PLAIN's message (RFC 4616: authzid NUL authcid NUL password). A wrong user or password
gets SASL_AUTHENTICATION_FAILED and the connection closes; so does any other request
before authentication, or a second handshake after it, answered ILLEGAL_SASL_STATE
(Kafka's rules; no re-authentication: session_lifetime_ms is 0). On a PLAINTEXT
listener both APIs answer ILLEGAL_SASL_STATE, as Kafka's do.

The users and their password hashes are in `sasl.plain.users.file` (sasl_users.py).
PLAIN sends the password in clear on the wire: use it on loopback or a network you
trust (no TLS).
"""
import logging

from odradek.daemon.gateway.apis import Api
from odradek.daemon.gateway.codec import ErrorCode, build, response_class
from odradek.daemon.gateway.sasl_users import MECHANISMS

__all__ = ["APIS", "allowed"]

SASL_HANDSHAKE, SASL_AUTHENTICATE, API_VERSIONS = 17, 36, 18
_STATE = "sasl"          # ctx.conn.state key: None, "handshaken", or ("authenticated", user)


def allowed(ctx, request):
    """Whether `request` may be served on this connection now (before authentication on
    a SASL listener: ApiVersions and the SASL APIs only)."""
    return allowed_key(ctx, request.api_key)


def allowed_key(ctx, api_key):
    """allowed() by the request's api key alone."""
    if ctx.gateway.sasl is None or api_key in (API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE):
        return True
    state = ctx.conn.state.get(_STATE)
    return isinstance(state, tuple)


def handshake(ctx, request):
    cls = response_class(SASL_HANDSHAKE, request.api_version)
    if ctx.gateway.sasl is None or ctx.conn.state.get(_STATE) is not None:
        ctx.conn.close_after = True
        return build(cls, error_code=ErrorCode.illegal_sasl_state, mechanisms=[])
    if request.body.mechanism not in MECHANISMS:
        return build(cls, error_code=ErrorCode.unsupported_sasl_mechanism, mechanisms=list(MECHANISMS))
    ctx.conn.state[_STATE] = "handshaken"
    return build(cls, error_code=ErrorCode.none, mechanisms=list(MECHANISMS))


def authenticate(ctx, request):
    cls = response_class(SASL_AUTHENTICATE, request.api_version)
    if ctx.gateway.sasl is None or ctx.conn.state.get(_STATE) != "handshaken":
        ctx.conn.close_after = True
        return build(cls, error_code=ErrorCode.illegal_sasl_state, auth_bytes=b"",
                     error_message="SaslAuthenticate must follow a SaslHandshake, once")
    parts = bytes(request.body.auth_bytes).split(b"\0")
    user = parts[1].decode(errors="replace") if len(parts) == 3 else ""
    if len(parts) != 3 or parts[0] not in (b"", parts[1]) or not ctx.gateway.sasl.verify(user, parts[2]):
        ctx.conn.note("SASL/PLAIN authentication failed for %r", user, level=logging.WARNING)
        ctx.conn.close_after = True
        return build(cls, error_code=ErrorCode.sasl_authentication_failed, auth_bytes=b"",
                     error_message="Authentication failed: invalid username or password")
    ctx.conn.state[_STATE] = ("authenticated", user)
    ctx.conn.principal = user
    return build(cls, error_code=ErrorCode.none, auth_bytes=b"", session_lifetime=0)


APIS = [Api(SASL_HANDSHAKE, 1, 1, handshake), Api(SASL_AUTHENTICATE, 0, 2, authenticate)]
