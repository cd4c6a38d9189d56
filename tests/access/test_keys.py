"""Keys, the key ring's checks and the login cookies, without a server (the stores have their
contract suite in test_key_store_contract.py)."""

from __future__ import annotations

import time

import pytest

from sluice.access.control import KeyRing
from sluice.access.keys import (
    KEY_PREFIX,
    KeyError_,
    MemoryKeyStore,
    digest,
    make_key,
)
from sluice.access.limits import RateWindow
from sluice.errors import BudgetExceeded, Forbidden, RateLimited, Unauthorized


def test_a_key_is_192_random_bits_and_only_its_hash_and_prefix_are_kept() -> None:
    raw, key = make_key("alice")
    assert raw.startswith(KEY_PREFIX) and len(raw) == len(KEY_PREFIX) + 32
    assert key.hash == digest(raw) and raw not in repr(key)
    assert raw.startswith(key.prefix) and len(key.prefix) == len(KEY_PREFIX) + 8
    assert "hash" not in key.public()
    others = {make_key("x")[0] for _ in range(100)}
    assert len(others) == 100


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("", {}),
        ("a b", {}),
        ("x" * 65, {}),
        ("ok", {"budget": 0}),
        ("ok", {"rpm": 0}),
        ("ok", {"max_streams": -1}),
        ("ok", {"expires_in": -5}),
    ],
)
def test_impossible_keys_are_refused(name: str, options: dict[str, float]) -> None:
    with pytest.raises(KeyError_):
        make_key(name, **options)  # type: ignore[arg-type]


def test_a_role_outside_the_three_is_refused() -> None:
    with pytest.raises(KeyError_):
        make_key("x", "admin")


async def test_the_ring_tells_malformed_unknown_revoked_and_expired_keys_apart() -> None:
    ring = KeyRing(MemoryKeyStore())
    await ring.open()
    raw, _ = await ring.create("alice")
    assert ring.authenticate(raw).key is not None
    messages = []
    for bad in ("hello", KEY_PREFIX + "A" * 32):
        with pytest.raises(Unauthorized) as caught:
            ring.authenticate(bad)
        messages.append(caught.value.message)
    assert "malformed" in messages[0] and "not known" in messages[1]
    await ring.revoke("alice")
    with pytest.raises(Unauthorized, match="revoked"):
        ring.authenticate(raw)
    raw2, _ = await ring.create("carol", expires_in=30)
    with pytest.raises(Unauthorized, match="expired"):
        ring.authenticate(raw2, now=time.time() + 31)


async def test_model_globs_limit_a_key_and_no_globs_allow_every_model() -> None:
    ring = KeyRing(MemoryKeyStore())
    await ring.open()
    limited = ring.authenticate((await ring.create("a", models=["sim/*", "openai/gpt-4o*"]))[0])
    free = ring.authenticate((await ring.create("b"))[0])
    ring.check_model(limited, "sim/support")
    ring.check_model(limited, "openai/gpt-4o-mini")
    with pytest.raises(Forbidden):
        ring.check_model(limited, "anthropic/claude")
    ring.check_model(free, "anthropic/claude")


async def test_rpm_max_streams_and_budget_refuse_with_a_retry_after() -> None:
    ring = KeyRing(MemoryKeyStore())
    await ring.open()
    principal = ring.authenticate((await ring.create("a", rpm=2, max_streams=1, budget=0.01))[0])
    now = 1000.0
    ring.admit(principal, live=0, now=now)
    ring.admit(principal, live=0, now=now + 1)
    with pytest.raises(RateLimited) as caught:
        ring.admit(principal, live=0, now=now + 2)
    assert caught.value.status == 429 and 57 <= caught.value.retry_after <= 59
    ring.admit(principal, live=0, now=now + 61)  # the first request left the window
    with pytest.raises(RateLimited, match="streams open"):
        ring.admit(principal, live=1, now=now + 200)
    ring.session_ended("a", 0.004, 10)
    ring.session_ended("a", None, 5)
    ring.session_ended("a", 0.007, 10)
    with pytest.raises(BudgetExceeded) as over:
        ring.admit(principal, live=0, now=now + 300)
    assert over.value.type == "budget_exceeded" and over.value.status == 429
    key = ring.get("a")
    assert key is not None and key.spend == pytest.approx(0.011) and key.unpriced_sessions == 1
    assert key.public()["spend_complete"] is False


async def test_tpm_counts_the_tokens_of_the_sessions_that_ended() -> None:
    ring = KeyRing(MemoryKeyStore())
    await ring.open()
    principal = ring.authenticate((await ring.create("a", tpm=100))[0])
    ring.session_ended("a", 0.0, 120, now=500.0)
    with pytest.raises(RateLimited, match="tokens"):
        ring.admit(principal, live=0, now=510.0)
    ring.admit(principal, live=0, now=561.0)


async def test_a_login_cookie_is_good_for_its_key_until_it_expires_or_the_key_is_revoked() -> None:
    ring = KeyRing(MemoryKeyStore())
    await ring.open()
    raw, _ = await ring.create("ops", "operator")
    principal, cookie = ring.login(raw)
    assert principal.role == "operator"
    checked = ring.from_cookie(cookie)
    assert checked is not None and checked.via == "cookie" and checked.role == "operator"
    name, expires, signature = cookie.rsplit(".", 2)
    assert ring.from_cookie(f"{name}.{expires}.{'0' * len(signature)}") is None
    assert ring.from_cookie(f"{name}.{int(expires) + 10}.{signature}") is None
    assert ring.from_cookie(cookie, now=int(expires) + 1) is None
    assert ring.from_cookie("garbage") is None
    await ring.revoke("ops")
    assert ring.from_cookie(cookie) is None


async def test_client_keys_cannot_log_in_to_the_pages() -> None:
    ring = KeyRing(MemoryKeyStore())
    await ring.open()
    raw, _ = await ring.create("client")
    with pytest.raises(Forbidden):
        ring.login(raw)


def test_a_rate_window_holds_at_most_a_minute_of_buckets() -> None:
    window = RateWindow()
    for second in range(1000):
        window.add(float(second), 3)
    assert window.used(999.5) == 60 * 3
    assert len(window._buckets) <= 61
    assert window.retry_after(999.5, 180) == 1.0
