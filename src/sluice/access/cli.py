"""``sluice keys``: create, list and revoke keys in the store that ``--config`` names.

A new key is printed once, as the last line of ``create``'s output, and kept nowhere: only
its hash and its prefix are stored. A running gateway sees a new or revoked key within a
second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from sluice.access.keys import ApiKey, KeyError_, make_key, open_key_store
from sluice.config import Settings


def run_keys(args: argparse.Namespace, settings: Settings) -> int:
    if settings.store_url == "memory://":
        print("sluice: keys need a store that lasts; set [store] url", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    store = open_key_store(settings.store_url)
    try:
        await store.open()
        if args.keys_command == "create":
            raw, key = make_key(
                args.name,
                args.role,
                tenant=args.tenant or "",
                models=[m.strip() for m in (args.models or "").split(",")],
                budget=args.budget,
                rpm=args.rpm,
                tpm=args.tpm,
                max_streams=args.max_streams,
                expires_in=args.expires,
            )
            await store.add(key)
            print(
                f"created {key.role} key {key.name!r} (tenant {key.tenant!r}, prefix {key.prefix})"
            )
            print("the key is shown once; keep it now:")
            print(raw)
        elif args.keys_command == "list":
            rows = [
                (
                    k.name,
                    k.prefix,
                    k.role,
                    k.tenant,
                    k.status(),
                    ",".join(k.models) or "*",
                    f"${k.spend:.6f}"
                    + (f" +{k.unpriced_sessions} unpriced" if k.unpriced_sessions else ""),
                    "-" if k.budget is None else f"${k.budget:.2f}",
                )
                for k in await store.all()
            ]
            header = ("NAME", "PREFIX", "ROLE", "TENANT", "STATUS", "MODELS", "SPEND", "BUDGET")
            widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
            for row in [header, *rows]:
                print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        else:
            key = await store.revoke(args.key, time.time())
            print(f"revoked key {key.name!r} ({key.prefix})")
    except KeyError_ as exc:
        print(f"sluice: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    return 0


def _spend(key: ApiKey) -> str:
    unpriced = f" +{key.unpriced_sessions} at unknown price" if key.unpriced_sessions else ""
    return f"${key.spend:.6f}{unpriced}"
