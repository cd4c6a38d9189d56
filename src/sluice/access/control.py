"""Who may do what: the key ring (every key in memory, kept current from the key store),
principals, per-key limits and spend, and the operators' login cookies.

The request path does no I/O here: a key is checked by one SHA-256 and one dict lookup, its
limits by a few integer comparisons. The ring polls the store once a second for keys added or
revoked elsewhere (``sluice keys``, another process), and writes the spend of the sessions
that ended since the last poll in one transaction.

Roles and what they may do (docs/security.md has the table):

- ``client``: start sessions on the models its key allows; list, read, follow, resume,
  cancel and retry its tenant's sessions, and no other (another tenant's id is "not found");
- ``viewer``: read every session, the operations center, its feeds and ``/metrics``;
- ``operator``: as a viewer, and start sessions, Stop and Retry any session, manage keys;
- ``open``: the principal of every request while ``[auth] required`` is off (the loopback
  demo): it may do everything, as before there were keys;
- ``anonymous``: a request on a public path (health, the login page) without a credential.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

from sluice.access.keys import (
    ApiKey,
    KeyError_,
    KeyStore,
    digest,
    looks_like_key,
    make_key,
)
from sluice.access.limits import RateWindow
from sluice.errors import BudgetExceeded, Forbidden, RateLimited, Unauthorized
from sluice.logs import kv

log = logging.getLogger("sluice.access")

#: seconds a login cookie lasts
COOKIE_LIFETIME = 12 * 3600.0
COOKIE_NAME = "sluice_session"


@dataclass(frozen=True, slots=True)
class Principal:
    """The credential a request carries, checked."""

    role: str
    key: ApiKey | None = None
    #: "bearer" (Authorization / x-api-key), "cookie" (a login), or "" (none: auth is off)
    via: str = ""

    @property
    def tenant(self) -> str | None:
        """The owner of the sessions this principal starts; None while auth is off."""
        return None if self.key is None else self.key.tenant

    @property
    def sees_all(self) -> bool:
        return self.role in ("open", "viewer", "operator")

    @property
    def controls_all(self) -> bool:
        """May Stop and Retry any session."""
        return self.role in ("open", "operator")

    @property
    def may_start(self) -> bool:
        return self.role in ("open", "client", "operator")

    @property
    def is_staff(self) -> bool:
        """May see the operations center, its feeds, the admin API's lists and metrics."""
        return self.role in ("open", "viewer", "operator")

    @property
    def may_admin(self) -> bool:
        return self.role in ("open", "operator")

    def may_see(self, owner: str | None) -> bool:
        """Whether a session of ``owner`` exists for this principal (else: 404)."""
        if self.sees_all:
            return True
        return self.role == "client" and owner is not None and owner == self.tenant


#: every request's principal while ``[auth] required`` is off
OPEN = Principal("open")
#: a request on a public path without a valid credential: it may do nothing more
ANONYMOUS = Principal("anonymous")


class _KeyState:
    """What the ring counts for one key between store reads."""

    __slots__ = ("key", "models_allowed", "requests", "tokens")

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.requests = RateWindow()
        self.tokens = RateWindow()
        #: model -> allowed, for the models this key asked for (bounded)
        self.models_allowed: dict[str, bool] = {}


class KeyRing:
    """Every key in memory by hash, kept current from ``store``."""

    #: seconds between two polls of the store
    POLL_INTERVAL = 1.0

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._by_hash: dict[str, _KeyState] = {}
        self._by_name: dict[str, _KeyState] = {}
        self._version = -1
        #: spend not yet written: name -> (cost, unpriced sessions)
        self._pending: dict[str, tuple[float, int]] = {}
        self._secret = b""

    # -- keeping current ---------------------------------------------------------------------

    async def open(self) -> None:
        await self.store.open()
        self._secret = await self.store.secret()
        await self.refresh()

    async def refresh(self) -> bool:
        """Reload the keys when the store says they changed; True when it did. The spend
        this ring counted and has not written yet is kept on top of the stored totals."""
        version = await self.store.version()
        if version == self._version:
            return False
        keys = await self.store.all()
        by_hash: dict[str, _KeyState] = {}
        by_name: dict[str, _KeyState] = {}
        for key in keys:
            state = self._by_name.get(key.name)
            if state is None:
                state = _KeyState(key)
            else:
                state.key = key
                state.models_allowed = {}
            pending = self._pending.get(key.name)
            if pending is not None:
                key.spend += pending[0]
                key.unpriced_sessions += pending[1]
            by_hash[key.hash] = state
            by_name[key.name] = state
        self._by_hash, self._by_name, self._version = by_hash, by_name, version
        return True

    async def flush(self) -> None:
        """Write the spend counted since the last flush."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            await self.store.add_spend(pending)
        except KeyError_ as exc:  # kept for the next flush
            for name, (cost, unpriced) in pending.items():
                old = self._pending.get(name, (0.0, 0))
                self._pending[name] = (old[0] + cost, old[1] + unpriced)
            log.warning("key spend not written %s", kv(error=exc.message))

    async def tick(self) -> None:
        """One poll: spend written, keys reloaded if changed, else their spend re-read (what
        other processes and nodes added: a budget holds across all of them, a second late at
        most)."""
        await self.flush()
        try:
            if not await self.refresh():
                await self.refresh_spend()
        except KeyError_ as exc:
            log.warning("keys not reloaded %s", kv(error=exc.message))

    async def refresh_spend(self) -> None:
        """Each key's spend as stored (every process's flushes), plus what this ring counted
        and has not written yet."""
        stored = await self.store.spends()
        for name, state in self._by_name.items():
            totals = stored.get(name)
            if totals is None:
                continue
            pending = self._pending.get(name, (0.0, 0))
            state.key.spend = totals[0] + pending[0]
            state.key.unpriced_sessions = totals[1] + pending[1]

    async def close(self) -> None:
        await self.flush()
        await self.store.close()

    # -- the request path ----------------------------------------------------------------------

    def authenticate(self, raw: str, now: float | None = None) -> Principal:
        """The principal of a presented key, or ``Unauthorized``."""
        state = self._by_hash.get(digest(raw))
        if state is None:
            if not looks_like_key(raw):
                raise Unauthorized("the API key is malformed; Sluice keys start with sk-sluice-")
            raise Unauthorized("the API key is not known to this gateway")
        key = state.key
        if key.revoked_at is not None:
            raise Unauthorized("the API key was revoked")
        if key.expires_at is not None and (now or time.time()) >= key.expires_at:
            raise Unauthorized("the API key has expired")
        return Principal(key.role, key, "bearer")

    def check_model(self, principal: Principal, model: str) -> None:
        """403 for a model outside the key's allow-list."""
        key = principal.key
        if key is None or not key.models:
            return
        state = self._by_name.get(key.name)
        cache = state.models_allowed if state is not None else {}
        allowed = cache.get(model)
        if allowed is None:
            allowed = any(fnmatch.fnmatchcase(model, glob) for glob in key.models)
            if len(cache) < 256:
                cache[model] = allowed
        if not allowed:
            raise Forbidden(f"this API key may not use the model {model!r}")

    def allows_model(self, principal: Principal, model: str) -> bool:
        try:
            self.check_model(principal, model)
        except Forbidden:
            return False
        return True

    def admit(self, principal: Principal, live: int, now: float | None = None) -> None:
        """The key's budget, rpm, tpm and ceiling of live streams; counts the request when
        it passes. ``live`` is the key's live sessions now."""
        key = principal.key
        if key is None:
            return
        state = self._by_name.get(key.name)
        if state is None:
            return
        now = time.time() if now is None else now
        if key.budget is not None and key.spend >= key.budget:
            raise BudgetExceeded(
                f"this API key has spent ${key.spend:.6f} of its budget of ${key.budget:.2f}",
                retry_after=3600.0,
            )
        if key.max_streams is not None and live >= key.max_streams:
            raise RateLimited(
                f"this API key has {key.max_streams} streams open, its ceiling; retry when one ends"
            )
        if key.rpm is not None and state.requests.used(now) >= key.rpm:
            raise RateLimited(
                f"this API key made {key.rpm} requests in the last minute, its limit",
                retry_after=state.requests.retry_after(now, key.rpm),
            )
        if key.tpm is not None and state.tokens.used(now) >= key.tpm:
            raise RateLimited(
                f"this API key used {key.tpm} tokens in the last minute, its limit",
                retry_after=state.tokens.retry_after(now, key.tpm),
            )
        state.requests.add(now)

    def session_ended(
        self, key_name: str, cost: float | None, tokens: int, now: float | None = None
    ) -> None:
        """A session of the key ended (again, after a retry: ``cost`` is then what the new
        attempt added): its cost goes to the key's spend, its tokens to its tpm window."""
        state = self._by_name.get(key_name)
        if state is None:
            return
        key = state.key
        unpriced = 1 if cost is None else 0
        amount = cost or 0.0
        key.spend += amount
        key.unpriced_sessions += unpriced
        old = self._pending.get(key_name, (0.0, 0))
        self._pending[key_name] = (old[0] + amount, old[1] + unpriced)
        state.tokens.add(time.time() if now is None else now, tokens)

    # -- keys ----------------------------------------------------------------------------------

    def keys(self) -> list[ApiKey]:
        return [state.key for state in self._by_name.values()]

    def get(self, name: str) -> ApiKey | None:
        state = self._by_name.get(name)
        return None if state is None else state.key

    async def create(self, name: str, role: str = "client", **options: Any) -> tuple[str, ApiKey]:
        raw, key = make_key(name, role, **options)
        await self.store.add(key)
        await self.refresh()
        return raw, key

    async def revoke(self, name_or_prefix: str) -> ApiKey:
        key = await self.store.revoke(name_or_prefix, time.time())
        await self.refresh()
        return key

    # -- operators' login cookies --------------------------------------------------------------

    def login(self, raw: str) -> tuple[Principal, str]:
        """A login with an operator's or viewer's key: its principal and the cookie's value."""
        principal = self.authenticate(raw)
        if principal.role not in ("viewer", "operator"):
            raise Forbidden("only viewer and operator keys can log in to the pages")
        assert principal.key is not None
        expires = int(time.time() + COOKIE_LIFETIME)
        payload = f"{principal.key.name}.{expires}"
        return principal, f"v1.{payload}.{self._sign(payload, principal.key)}"

    def from_cookie(self, value: str, now: float | None = None) -> Principal | None:
        """The principal of a login cookie, or None when it is not (or no longer) valid: a
        bad signature, past its expiry, or its key revoked, expired or gone."""
        parts = value.rsplit(".", 2)
        if len(parts) != 3 or not parts[0].startswith("v1."):
            return None
        name, expires_raw, signature = parts[0][3:], parts[1], parts[2]
        if not expires_raw.isdigit() or len(expires_raw) > 12:
            return None
        state = self._by_name.get(name)
        if state is None:
            return None
        key = state.key
        if not hmac.compare_digest(signature, self._sign(f"{name}.{expires_raw}", key)):
            return None
        now = time.time() if now is None else now
        if int(expires_raw) <= now or key.status(now) != "active":
            return None
        if key.role not in ("viewer", "operator"):
            return None
        return Principal(key.role, key, "cookie")

    def _sign(self, payload: str, key: ApiKey) -> str:
        # The key's hash is in the signed text: a cookie is good only for the key it was
        # issued to, and revoking that key ends its logins.
        message = f"{payload}.{key.hash}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:40]
