"""Agents' tools: those of MCP servers and those built into the gateway, behind one interface.

tools      the interface (``Tool``), a call's outcome and progress, the error tree
mcp        ``ToolBox``: the configured MCP servers' connections, their tools and calls
builtin    clock, calculator, docs_search
declare    an agent's tools under names a model accepts, as ``ToolSpec`` for a turn
"""
