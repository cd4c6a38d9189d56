"""The gateway's outermost layer: every HTTP request and WebSocket handshake passes here before
any route, the provider endpoints' direct path included.

In this order:

1. ``Host`` must name this gateway (``[server] allowed_hosts``): a page on another site that
   rebinds its own DNS name to this address is refused (DNS rebinding).
2. A CORS preflight from a configured front end (``[server] cors_origins``) is answered.
3. A state change (POST, PUT, PATCH, DELETE), a WebSocket handshake, or a GET that follows a
   session as one of its readers (its events, the chat page's stream: a reader that leaves
   can cancel the session) that a browser sends from another origin is refused, unless that
   origin is allowed: a page elsewhere cannot cancel, start or read a session through a
   visitor's browser, whatever credentials the browser holds. (Non-browser clients send no
   ``Origin``; a browser's no-cors GET sends none either, but says ``Sec-Fetch-Site``.)
4. A state change of the API carries JSON or nothing: a ``text/plain`` form or a ``no-cors``
   fetch, which a browser sends cross-site without a preflight, is refused with 415.
5. The credential: an ``Authorization: Bearer``, ``x-api-key`` or ``x-goog-api-key`` key (on
   Gemini's endpoints also ``?key=``, as Google takes it), or an operator's login cookie,
   checked against the key ring; required on every path but the public ones when
   ``[auth] required`` is on. The operations center, its feeds, the admin API and
   ``/metrics`` also need a viewer's or operator's role, and key management an operator's.

The checked principal is put in the scope (``PRINCIPAL``); the endpoints decide the rest
(tenancy, models, limits). Per request this is one pass over the headers, a hash and a few
dict lookups: nothing per relayed chunk.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.responses import RedirectResponse, Response

from sluice.access.control import ANONYMOUS, COOKIE_NAME, OPEN, KeyRing, Principal
from sluice.config import Settings
from sluice.errors import (
    Forbidden,
    SluiceError,
    Unauthorized,
    UnsupportedMediaType,
)
from sluice.gateway.responses import error_response, format_of
from sluice.logs import kv
from sluice.wire import formats

log = logging.getLogger("sluice.gateway")

#: the scope key of the request's checked principal
PRINCIPAL = "sluice.principal"
#: the scope key of the allowed CORS origin of a cross-origin request
CORS_ORIGIN = "sluice.cors_origin"

_UNSAFE = frozenset(("POST", "PUT", "PATCH", "DELETE"))
#: paths anyone may reach, with or without a credential
_PUBLIC = frozenset(("/healthz", "/openapi.json", "/login", "/logout", "/runbook", "/favicon.ico"))
_PUBLIC_PREFIXES = ("/static/",)
#: paths for viewers and operators only (and the WebSocket feeds under /ops)
_STAFF_PREFIXES = ("/ops", "/metrics", "/api/admin/", "/sim/requests")
#: pages a browser opens: without a credential, the answer is the login page
_PAGE_PREFIXES = ("/ops", "/chat/")
_WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_CORS_ALLOW_HEADERS = (
    "authorization, content-type, x-api-key, x-goog-api-key, x-goog-api-client, "
    "last-event-id, anthropic-version, "
    "anthropic-beta, openai-organization, openai-project, x-stainless-arch, x-stainless-lang, "
    "x-stainless-os, x-stainless-package-version, x-stainless-runtime, "
    "x-stainless-runtime-version, x-stainless-retry-count, x-stainless-timeout"
)
_CORS_EXPOSE_HEADERS = "x-sluice-session-id, x-sluice-conversation-id, retry-after, location"


def _host_name(value: bytes) -> bytes:
    """The name part of a ``Host`` header, lowercase: no port, no IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith(b"["):
        end = value.find(b"]")
        return value[1:end] if end > 0 else value
    colon = value.find(b":")
    return value if colon < 0 else value[:colon]


def default_allowed_hosts(bind: str) -> list[str]:
    """The bound address and the loopback names; every name when bound to all addresses."""
    if bind in _WILDCARD_BINDS:
        return ["*"]
    return [bind.strip("[]").lower(), *_LOOPBACK_NAMES]


class Guard:
    def __init__(self, settings: Settings, ring: KeyRing | None) -> None:
        self.ring = ring if settings.auth.required else None
        hosts = settings.allowed_hosts or default_allowed_hosts(settings.host)
        self.any_host = "*" in hosts
        self.hosts = frozenset(h.strip("[]").encode() for h in hosts)
        self.cors = frozenset(o.encode() for o in settings.cors_origins)
        self.origins = frozenset(o.encode() for o in settings.allowed_origins) | self.cors
        self.open_metrics = settings.auth.open_metrics
        #: refusals by (area, type), for the metrics
        self.refused: Any = None

    # -- HTTP ----------------------------------------------------------------------------------

    def http(self, scope: Any) -> Principal | Response:
        """The request's principal, or the response that refuses it."""
        headers = _wanted_headers(scope)
        get = headers.get
        host, origin, cookie = get(b"host"), get(b"origin"), get(b"cookie")
        authorization, api_key = get(b"authorization"), get(b"x-api-key") or get(b"x-goog-api-key")
        ctype, fetch_site = get(b"content-type"), get(b"sec-fetch-site")
        preflight = b"access-control-request-method" in headers
        length = get(b"content-length")
        has_body = b"transfer-encoding" in headers or (
            length is not None and length.strip() not in (b"", b"0")
        )
        path: str = scope["path"]
        method: str = scope["method"]
        if (
            api_key is None
            and path.startswith(_KEY_IN_QUERY)
            and formats.for_path(path) is formats.GEMINI
        ):
            api_key = _query_key(scope)
        if host is not None and not self.any_host and _host_name(host) not in self.hosts:
            return self._refuse(
                path, Forbidden("this gateway does not answer to that Host"), headers
            )
        if origin is not None and origin.lower() in self.cors:
            if method == "OPTIONS" and preflight:
                return self._preflight(origin)
            scope[CORS_ORIGIN] = origin.decode("latin-1")
        if method in _UNSAFE:
            if not self._same_or_allowed(origin, host, fetch_site):
                return self._refuse(
                    path, Forbidden("a state change from another site is not allowed"), headers
                )
            if path.startswith(_JSON_PREFIXES) and (
                (ctype is not None and not _is_json(ctype)) or (ctype is None and has_body)
            ):
                return self._refuse(
                    path,
                    UnsupportedMediaType("a request that changes state must send application/json"),
                    headers,
                )
        elif _follows_session(path) and not self._same_or_allowed(origin, host, fetch_site):
            # Following a session makes the request one of its readers, and a reader that
            # leaves early is a disconnect, which the session's policy may answer with a
            # cancel: for a browser, a state change like a POST.
            return self._refuse(
                path, Forbidden("following a session from another site is not allowed"), headers
            )
        ring = self.ring
        if ring is None:
            return OPEN
        public = (
            path in _PUBLIC
            or path.startswith(_PUBLIC_PREFIXES)
            or (path.startswith("/sim/") and not path.startswith("/sim/requests"))
        )
        if path == "/metrics" and self.open_metrics:
            public = True
        page = method == "GET" and (path == "/" or path.startswith(_PAGE_PREFIXES))
        try:
            principal = self._credential(ring, authorization, api_key, cookie)
        except Unauthorized as exc:
            if public:
                return ANONYMOUS
            if page and authorization is None and api_key is None:
                # a login cookie that no longer holds (expired, its key revoked): a browser
                # is sent to log in again, and the dead cookie is dropped
                return _to_login(path, clear_cookie=True)
            return self._refuse(path, exc, headers, www_authenticate=True)
        if principal is None:
            if public:
                return ANONYMOUS
            if page:
                return _to_login(path)
            return self._refuse(
                path,
                Unauthorized(
                    "an API key is required: send it as 'Authorization: Bearer <key>' or "
                    "'x-api-key: <key>'"
                ),
                headers,
                www_authenticate=True,
            )
        refusal = self._role(principal, path, method)
        if refusal is not None:
            return self._refuse(path, refusal, headers)
        return principal

    # -- WebSocket -----------------------------------------------------------------------------

    def websocket(self, scope: Any) -> Principal | SluiceError:
        headers = _wanted_headers(scope)
        get = headers.get
        host, origin, cookie = get(b"host"), get(b"origin"), get(b"cookie")
        authorization, api_key = get(b"authorization"), get(b"x-api-key") or get(b"x-goog-api-key")
        if host is not None and not self.any_host and _host_name(host) not in self.hosts:
            return Forbidden("this gateway does not answer to that Host")
        if not self._same_or_allowed(origin, host, None):
            return Forbidden("a WebSocket from another site is not allowed")
        ring = self.ring
        if ring is None:
            return OPEN
        try:
            principal = self._credential(ring, authorization, api_key, cookie)
        except Unauthorized as exc:
            return exc
        if principal is None:
            return Unauthorized("a credential is required")
        return self._role(principal, scope["path"], "GET") or principal

    # -- parts ---------------------------------------------------------------------------------

    def _same_or_allowed(
        self, origin: bytes | None, host: bytes | None, fetch_site: bytes | None
    ) -> bool:
        if origin is None:
            # Browsers send Origin with every state change and handshake; without it, the
            # request is not a browser's, unless the browser says it came from elsewhere.
            return fetch_site not in (b"cross-site", b"same-site")
        origin = origin.lower()
        if origin in self.origins:
            return True
        scheme_end = origin.find(b"://")
        return (
            scheme_end > 0
            and host is not None
            and origin[:scheme_end] in (b"http", b"https")
            and origin[scheme_end + 3 :] == host.strip().lower()
        )

    @staticmethod
    def _credential(
        ring: KeyRing,
        authorization: bytes | None,
        api_key: bytes | None,
        cookie: bytes | None,
    ) -> Principal | None:
        raw: bytes | None = api_key
        if raw is None and authorization is not None:
            scheme, _, token = authorization.strip().partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                raise Unauthorized("the Authorization header must be 'Bearer <key>'")
            raw = token.strip()
        if raw is not None:
            return ring.authenticate(raw.decode("latin-1"))
        if cookie is not None:
            value = _cookie_value(cookie, COOKIE_NAME)
            if value is not None:
                principal = ring.from_cookie(value)
                if principal is None:
                    raise Unauthorized("the login has expired; log in again")
                return principal
        return None

    @staticmethod
    def _role(principal: Principal, path: str, method: str) -> SluiceError | None:
        if path.startswith(_STAFF_PREFIXES):
            if not principal.is_staff:
                return Forbidden("this needs a viewer's or an operator's credential")
            if path.startswith("/api/admin/") and method != "GET" and not principal.may_admin:
                return Forbidden("managing keys needs an operator's credential")
        return None

    def _refuse(
        self,
        path: str,
        exc: SluiceError,
        request_headers: dict[bytes, bytes],
        *,
        www_authenticate: bool = False,
    ) -> Response:
        """``exc`` in the error format of the API ``path`` belongs to (on a path several
        formats share, the one whose SDK's header the request carries)."""
        if self.refused is not None:
            self.refused(path, exc.type)
        log.info("request refused %s", kv(path=path[:200], status=exc.status, type=exc.type))
        headers = {"www-authenticate": 'Bearer realm="sluice"'} if www_authenticate else None
        fmt = format_of(path, (name.decode("latin-1") for name in request_headers))
        return error_response(fmt, exc.status, exc.type, exc.message, headers)

    @staticmethod
    def _preflight(origin: bytes) -> Response:
        return Response(
            status_code=204,
            headers={
                "access-control-allow-origin": origin.decode("latin-1"),
                "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
                "access-control-allow-headers": _CORS_ALLOW_HEADERS,
                "access-control-expose-headers": _CORS_EXPOSE_HEADERS,
                "access-control-max-age": "600",
                "vary": "origin",
            },
        )


#: the request headers the guard reads (the SDKs' own headers of the wire formats, for
#: the error format of a refusal on a path several formats share)
_WANTED = frozenset(
    (
        *(fmt.sdk_header.encode() for fmt in formats.all() if fmt.sdk_header is not None),
        b"host",
        b"origin",
        b"cookie",
        b"authorization",
        b"x-api-key",
        b"x-goog-api-key",
        b"content-type",
        b"content-length",
        b"transfer-encoding",
        b"sec-fetch-site",
        b"access-control-request-method",
    )
)


#: the API paths whose state changes must carry JSON
_JSON_PREFIXES = ("/api/", "/v1/", "/v1beta/", "/ag-ui/")
#: the paths whose clients may send their key as ``?key=`` (Gemini's endpoints, as Google's)
_KEY_IN_QUERY = formats.GEMINI.endpoints


def _query_key(scope: Any) -> bytes | None:
    """The ``key`` of the query string, if there is one (its last value)."""
    query: bytes = scope.get("query_string", b"")
    if b"key=" not in query:
        return None
    found = parse_qs(query.decode("latin-1")).get("key")
    return found[-1].encode("latin-1") if found else None


def _wanted_headers(scope: Any) -> dict[bytes, bytes]:
    """The headers the guard reads, in one pass (a repeated one: its last value)."""
    return {name: value for name, value in scope["headers"] if name in _WANTED}


def _follows_session(path: str) -> bool:
    """A GET that attaches a reader to a session: its SSE events, the chat page's stream, a
    Responses response (streamed from its log when asked), or a chat's run resumed."""
    return (
        path.startswith(("/chat/sessions/", "/v1/responses/"))
        or (path.startswith("/api/sessions/") and path.endswith("/events"))
        or (path.startswith("/api/agents/") and path.endswith("/stream"))
    )


def _to_login(path: str, *, clear_cookie: bool = False) -> Response:
    response = RedirectResponse(f"/login?next={quote(path)}", status_code=303)
    if clear_cookie:
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response


def _is_json(ctype: bytes) -> bool:
    media = ctype.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def _cookie_value(header: bytes, name: str) -> str | None:
    wanted = name.encode() + b"="
    for part in header.split(b";"):
        part = part.strip()
        if part.startswith(wanted):
            return part[len(wanted) :].decode("latin-1")
    return None


def cors_send(send: Any, origin: str) -> Any:
    """``send``, with the CORS headers added to the response's start."""

    async def send_with_cors(message: Any) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
            headers.append((b"access-control-expose-headers", _CORS_EXPOSE_HEADERS.encode()))
            headers.append((b"vary", b"origin"))
            message = {**message, "headers": headers}
        await send(message)

    return send_with_cors
