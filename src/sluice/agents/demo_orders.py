"""The demo's MCP server: a shop's orders, over stdio, written with the ``mcp`` SDK.

``python -m sluice.agents.demo_orders`` serves two tools on a few made-up orders, so that
``sluice demo`` runs an agent against a real MCP server with nothing to reach:
``lookup_order`` (an order's items and status) and ``shipping_estimate`` (when it arrives,
with progress reported while the carrier is "asked").
"""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("sluice-demo-orders")

ORDERS = {
    "A-1042": {
        "items": "2 x USB-C dock, 1 x 2 m cable",
        "status": "shipped 2026-12-02 by ParcelCo, tracking PC-88412",
        "carrier": "ParcelCo",
        "days": 5,
    },
    "A-1043": {
        "items": "1 x mechanical keyboard",
        "status": "packed, waiting for pickup",
        "carrier": "ParcelCo",
        "days": 3,
    },
}


def _order(order_id: str) -> dict[str, object] | None:
    return ORDERS.get(order_id.strip().upper())


@server.tool(description="Look up an order by its id (such as A-1042): items and status.")
def lookup_order(order_id: str) -> str:
    order = _order(order_id)
    if order is None:
        return f"no order {order_id!r}"
    return f"order {order_id.upper()}: {order['items']}; {order['status']}"


@server.tool(description="Estimate when an order arrives, by its id (such as A-1042).")
async def shipping_estimate(order_id: str, ctx: Context) -> str:
    order = _order(order_id)
    if order is None:
        return f"no order {order_id!r}"
    await ctx.report_progress(1, 2, f"asking {order['carrier']}")
    await anyio.sleep(0.05)
    await ctx.report_progress(2, 2, "estimate received")
    carrier, days = order["carrier"], order["days"]
    return f"{carrier} expects to deliver order {order_id.upper()} {days} days after shipping"


if __name__ == "__main__":
    anyio.run(server.run_stdio_async)
