"""[agents.NAME] and [mcp.NAME]: what they read, and the settings refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.config import ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluice.toml"
    path.write_text(text)
    return path


SERVERS = """
[mcp.orders]
command = ["python", "-m", "orders_mcp"]
env = { ORDERS_DB = "/srv/orders.db", ORDERS_TOKEN = "${ORDERS_TOKEN}" }
cwd = "/srv"

[mcp.search]
url = "https://mcp.example.test/mcp"
headers = { Authorization = "Bearer ${SEARCH_TOKEN}" }
connect_timeout = 5
"""


def test_agents_and_servers_are_read_with_their_defaults(tmp_path: Path) -> None:
    text = (
        SERVERS
        + """
[agents.support]
model = "sim/support"
system = "You answer questions about orders."
tools = ["orders", "search.web_search", "clock", "calculator"]
max_steps = 4
tool_timeout = 12.5

[agents.bare]
model = "openai/gpt-4o-mini"
"""
    )
    settings = load_settings(write(tmp_path, text))
    orders, search = settings.mcp["orders"], settings.mcp["search"]
    assert (orders.transport, orders.command, orders.cwd) == (
        "stdio",
        ["python", "-m", "orders_mcp"],
        "/srv",
    )
    assert orders.env["ORDERS_TOKEN"] == "${ORDERS_TOKEN}"  # a reference, read at connect
    assert (search.transport, search.url, search.connect_timeout) == (
        "http",
        "https://mcp.example.test/mcp",
        5.0,
    )
    assert search.headers == {"Authorization": "Bearer ${SEARCH_TOKEN}"}
    support, bare = settings.agents["support"], settings.agents["bare"]
    assert support.tools == ["orders", "search.web_search", "clock", "calculator"]
    assert (support.max_steps, support.tool_timeout, support.system) == (
        4,
        12.5,
        "You answer questions about orders.",
    )
    assert (bare.tools, bare.max_steps, bare.tool_timeout, bare.system) == ([], 8, 30.0, None)


def test_no_file_declares_no_agent_and_no_server() -> None:
    settings = load_settings(None)
    assert settings.agents == {} and settings.mcp == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[agents.a]\nmodel = "nowhere/x"', r"agents\.a\.model: no provider 'nowhere'"),
        ('[agents.a]\nmodel = "gpt-4o"', r'agents\.a\.model must be "provider/model"'),
        ("[agents.a]\nmodel = 5", r"agents\.a\.model must be"),
        ('[agents.a]\nmodel = "sim/x"\ntools = ["nope"]', r"agents\.a\.tools: 'nope' is neither"),
        ('[agents.a]\nmodel = "sim/x"\ntools = ["nope.tool"]', r"'nope\.tool' is neither"),
        ('[agents.a]\nmodel = "sim/x"\ntools = "clock"', r"agents\.a\.tools must be a list"),
        ('[agents.a]\nmodel = "sim/x"\ntools = ["clock", "clock"]', "names a tool twice"),
        ('[agents.a]\nmodel = "sim/x"\nmax_steps = 0', r"agents\.a\.max_steps must be"),
        ('[agents.a]\nmodel = "sim/x"\nmax_steps = 2.5', r"agents\.a\.max_steps must be"),
        ('[agents.a]\nmodel = "sim/x"\ntool_timeout = -1', r"agents\.a\.tool_timeout must be"),
        ('[agents.a]\nmodel = "sim/x"\ntool_timeout = true', r"agents\.a\.tool_timeout must be"),
        ('[agents.a]\nmodel = "sim/x"\nsystem = 3', r"agents\.a\.system must be a string"),
        ('[agents.a]\nmodel = "sim/x"\nprompt = "hi"', r"agents\.a\.prompt is not a setting"),
        ('[agents."a b"]\nmodel = "sim/x"', r"agents\.a b: a name is 1 to 64"),
        ('[agents]\nmodel = "sim/x"', r"agents must be tables"),
        ("[mcp.m]\ncwd = '/'", r"mcp\.m needs either command \(stdio\) or url"),
        ('[mcp.m]\ncommand = ["x"]\nurl = "http://h/mcp"', r"mcp\.m needs either command"),
        ("[mcp.m]\ncommand = []", r"mcp\.m\.command must be a non-empty list"),
        ('[mcp.m]\ncommand = "python server.py"', r"mcp\.m\.command must be a non-empty list"),
        ('[mcp.m]\nurl = "ftp://h/mcp"', r"mcp\.m\.url must be an http:// or https:// URL"),
        ('[mcp.m]\nurl = "http://h/mcp"\nenv = { A = "b" }', r"mcp\.m\.env applies to a server"),
        ('[mcp.m]\ncommand = ["x"]\nheaders = { A = "b" }', r"mcp\.m\.headers apply to"),
        ('[mcp.m]\nurl = "http://h/mcp"\nheaders = { A = 1 }', r"mcp\.m\.headers must be a table"),
        ('[mcp.m]\ncommand = ["x"]\nenv = ["A=b"]', r"mcp\.m\.env must be a table of strings"),
        ('[mcp.m]\ncommand = ["x"]\ntimeout = 3', r"mcp\.m\.timeout is not a setting"),
        ('[mcp.m]\ncommand = ["x"]\nconnect_timeout = 0', r"mcp\.m\.connect_timeout must be"),
        ('[mcp.clock]\ncommand = ["x"]', r"mcp\.clock: 'clock' is a built-in tool's name"),
        ('[mcp."a.b"]\ncommand = ["x"]', r"mcp\.a\.b: a name is 1 to 64"),
    ],
)
def test_impossible_agents_and_servers_are_refused_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_a_refused_url_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, '[mcp.m]\nurl = "ws://user:hunter2@h/mcp"')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "hunter2" not in str(info.value)
