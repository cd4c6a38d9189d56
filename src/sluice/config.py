"""Configuration: the TOML file, its defaults, and the provider table it declares.

Every setting has an embedded default, so ``sluice serve`` with no file runs on SQLite, the
in-process bus and the built-in simulator. See docs/configuration.md for each key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.logs import LOG_FORMATS
from sluice.transports.network import ProxyError, parse_proxy
from sluice.wire import formats

#: The built-in simulator's kind: it speaks every registered wire format.
SIM_KIND = "sim"


def provider_kinds() -> tuple[str, ...]:
    """The provider kinds: those whose APIs the registered wire formats are, and ``sim``."""
    return (*formats.kinds(), SIM_KIND)


def kind_wires(kind: str) -> tuple[str, ...]:
    """The upstream wire formats a provider kind can speak, primary first."""
    return formats.names() if kind == SIM_KIND else formats.of_kind(kind)


DISCONNECT_POLICIES = ("cancel", "detach", "drain")

#: The upstream transports a provider can use (``sluice.transports``): the gateway's own
#: HTTP/1.1 client, or a maintained one (httpx, with HTTP/2; aiohttp).
TRANSPORTS = ("fast", "httpx", "aiohttp")


class ConfigError(Exception):
    """The configuration file is unreadable or names something impossible."""


@dataclass(slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    #: Which wire format to use upstream; ``None`` means "the client's own if the provider
    #: speaks it, else the kind's primary".
    wire: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    #: fast | httpx | aiohttp: the HTTP client that reaches the provider
    transport: str = "fast"
    #: ``None``: the environment's proxies (``HTTPS_PROXY``, ``NO_PROXY``...); ``""``: direct
    proxy: str | None = None
    #: PEM files: the CAs trusted for the provider (instead of the system's), and the client
    #: certificate presented to it (its key in ``client_key``, or in the same file)
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @property
    def sets_network(self) -> bool:
        """Whether the provider sets a transport or network setting of its own."""
        return self.transport != "fast" or any(
            value is not None
            for value in (self.proxy, self.ca_bundle, self.client_cert, self.client_key)
        )

    @property
    def wires(self) -> tuple[str, ...]:
        if self.wire is not None:
            return (self.wire,)
        return kind_wires(self.kind)

    def api_key(self) -> str | None:
        """The key from the environment, read at call time so rotation needs no restart."""
        if self.api_key_env is None:
            return None
        return os.environ.get(self.api_key_env) or None

    @property
    def needs_key(self) -> bool:
        return self.kind != SIM_KIND


@dataclass(slots=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


@dataclass(slots=True)
class StreamSettings:
    """How streams survive slow clients, idle proxies, failing providers and load."""

    #: cancel | detach | drain: what a client's disconnect does to its session
    disconnect_policy: str = "cancel"
    #: seconds a detached session keeps generating, waiting for a client to resume
    detach_grace: float = 30.0
    #: seconds between ``: ping`` comment frames on every SSE stream
    heartbeat_interval: float = 15.0
    #: seconds without a byte from the upstream before the session errors ``upstream_stalled``
    stall_timeout: float = 60.0
    #: seconds one write to a client may stay blocked before it is cut ``client_too_slow``
    client_send_timeout: float = 30.0
    #: events a reader may lag behind the upstream before the upstream read pauses
    buffer_events: int = 256
    #: attempts of a request refused before its stream began (429, 529, 5xx, no connection)
    retry_attempts: int = 3
    #: seconds within which those attempts must start
    retry_deadline: float = 30.0
    retry_base_delay: float = 0.5
    retry_max_delay: float = 8.0
    #: error | retry: a failure after the stream began ends the session, or retries the turn
    #: (native API only; provider-format clients cannot be told that the text restarts)
    mid_stream_failure: str = "error"
    #: attempts in all when mid_stream_failure = "retry"
    turn_attempts: int = 2
    #: concurrent live sessions; past it, 503 with Retry-After (0: no ceiling)
    max_concurrent: int = 1000
    #: concurrent live sessions per client key; past it, 429 with Retry-After (0: no ceiling)
    max_per_key: int = 0
    #: seconds session records and event logs are kept
    retention: float = 7 * 24 * 3600.0
    connect_timeout: float = 10.0
    #: send ``X-Accel-Buffering: no`` on SSE responses, so nginx relays them unbuffered
    accel_buffering_header: bool = True
    #: bytes one SSE line from the upstream may take before ``upstream_too_large``
    max_line_bytes: int = 4 * 1024 * 1024
    #: bytes one SSE event from the upstream may take (its data lines; for a passthrough
    #: session, every byte since the last event) before ``upstream_too_large``
    max_event_bytes: int = 8 * 1024 * 1024
    #: events one session's log may hold before ``upstream_too_large``
    max_stream_events: int = 200_000
    #: bytes one upstream response may take (status line and headers aside)
    max_stream_bytes: int = 128 * 1024 * 1024
    #: bytes of finished sessions kept in memory for replay (the store keeps them all)
    keep_finished_bytes: int = 64 * 1024 * 1024


@dataclass(slots=True)
class ClientLimits:
    """What a client connection may take of the gateway before it is cut off (``[server]``;
    docs/configuration.md gives the reason for each default)."""

    #: seconds from a connection's opening, or a request's first byte, to the end of its head
    header_timeout: float = 10.0
    #: seconds a kept-alive connection may wait, idle, for its next request
    idle_timeout: float = 75.0
    #: seconds from the end of a request's head to the end of its body
    body_timeout: float = 60.0
    #: bytes of a request's line and headers; past it, 431
    max_header_bytes: int = 32_768
    #: open client connections; past it the oldest idle one is closed (0: from the descriptor
    #: limit, see ``connection_ceiling``)
    max_connections: int = 0


#: The bounds of ``ops.flush_interval``, in seconds.
OPS_FLUSH_BOUNDS = (0.1, 0.25)


@dataclass(slots=True)
class OpsSettings:
    """The operations center's feed: how often it publishes, and how much history it shows."""

    #: seconds between coalesced updates of the operations views (0.1 to 0.25)
    flush_interval: float = 0.15
    #: finished sessions the operations center keeps showing, newest first
    recent_sessions: int = 500


@dataclass(slots=True)
class AuthSettings:
    """Who may use the gateway (docs/security.md)."""

    #: every request needs a key (or an operator's login); off: the loopback demo, as before
    required: bool = False
    #: ``/metrics`` answers without a credential (for a Prometheus that cannot send one)
    open_metrics: bool = False
    #: mark the login cookie ``Secure`` always (behind a proxy that ends TLS); it is marked
    #: so anyway when the request came over TLS
    secure_cookies: bool = False


@dataclass(slots=True)
class TelemetrySettings:
    """OpenTelemetry (docs/observability.md): off unless enabled here; where the traces and
    metrics go is said by the standard ``OTEL_*`` environment variables."""

    #: export a span per session and the GenAI metrics over OTLP
    enabled: bool = False


#: URL schemes ``bus.url`` accepts (redis-py's)
BUS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(slots=True)
class BusSettings:
    """What sessions share across processes and nodes (docs/deployment.md): unset, the
    in-process bus, live log and control channel of one process."""

    #: ``redis://host:port/db`` (``rediss://`` for TLS); None: in-process
    url: str | None = None
    #: put before every Redis key and channel, so that several deployments share one Redis
    prefix: str = "sluice:"
    #: seconds the live log gathers appends before writing them together (the most a crash
    #: of the gateway can lose of what was relayed, beside the write in flight)
    append_window: float = 0.005
    #: seconds a live session's keys outlive its last write (a dead node's logs go away)
    live_ttl: float = 86400.0
    #: seconds a node's lease lasts; renewed every third of it. A node silent this long is
    #: lost: a survivor closes its live sessions (``errored``, ``node_lost``)
    lease_ttl: float = 3.0


#: The tools built into the gateway (``sluice.agents.builtin``), which an agent's ``tools``
#: may name without a server.
BUILTIN_TOOLS = ("clock", "calculator", "docs_search")

#: What an agent's or an MCP server's name may be: it goes into URLs and tool names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: ``${NAME}`` in an MCP server's ``headers`` or ``env`` values: an environment variable,
#: read when the server is connected (so secrets stay out of the file).
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(slots=True)
class McpServerConfig:
    """An MCP server whose tools agents may use: a command run over stdio, or a URL
    (Streamable HTTP). ``env`` and ``headers`` values may hold ``${VAR}`` references."""

    name: str
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: seconds to start (or reach) the server and list its tools
    connect_timeout: float = 10.0

    @property
    def transport(self) -> str:
        return "http" if self.url is not None else "stdio"


@dataclass(slots=True)
class AgentConfig:
    """An agent: a model, its instructions and the tools it may call (docs/agents.md)."""

    name: str
    #: ``"provider/model"``, as clients address models
    model: str
    system: str | None = None
    #: MCP server names (all their tools), ``"server.tool"`` (one), or built-in tool names
    tools: list[str] = field(default_factory=list)
    #: model turns in one run, at most
    max_steps: int = 8
    #: seconds one tool call may take before it is reported to the model as timed out
    tool_timeout: float = 30.0


@dataclass(slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1_048_576
    #: ``Host`` names the gateway answers to (a port is ignored); empty: the bound address
    #: and the loopback names, or any name when bound to every address (0.0.0.0, ::)
    allowed_hosts: list[str] = field(default_factory=list)
    #: origins (``https://chat.example.com``) besides the gateway's own from which browsers
    #: may change state and open WebSockets
    allowed_origins: list[str] = field(default_factory=list)
    #: origins a chat front end may call the API from with CORS (off when empty)
    cors_origins: list[str] = field(default_factory=list)
    auth: AuthSettings = field(default_factory=AuthSettings)
    store_url: str = "sqlite:///var/sluice.db"
    #: whether records keep what was said (prompts, messages, answers, reasoning, tool
    #: arguments and results) and the gateway keeps conversations' history (docs/agents.md)
    keep_content: bool = True
    #: seconds between two writes of live sessions' new events to the store: a ``kill -9``
    #: loses at most this much of a live session (and the store's commit, a few ms more)
    journal_window: float = 0.1
    bus: BusSettings = field(default_factory=BusSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    log_level: str = "info"
    #: text (``message key=value``) or json (one object a line); docs/observability.md#logs
    log_format: str = "text"
    streams: StreamSettings = field(default_factory=StreamSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    client_limits: ClientLimits = field(default_factory=ClientLimits)
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)
    #: Settings passed to the embedded simulator (see sluice.sim.SimSettings).
    sim: dict[str, Any] = field(default_factory=dict)
    embed_sim: bool = True
    #: the MCP servers agents' tools come from, by name (docs/agents.md)
    mcp: dict[str, McpServerConfig] = field(default_factory=dict)
    agents: dict[str, AgentConfig] = field(default_factory=dict)


def default_providers() -> dict[str, ProviderConfig]:
    """A provider of each kind, named as its kind (the simulator's first)."""
    kinds = (SIM_KIND, *formats.kinds())
    return {name: _provider(name, {"kind": name}) for name in kinds}


def default_prices() -> dict[str, Price]:
    # The simulator is priced like a small hosted model so that the cost path is exercised
    # end to end; the record says the price came from this table, not from a price library.
    return {"sim/*": Price(input=0.15, output=0.60, cache_read=0.075)}


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (if any) over the embedded defaults, then apply keyword overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {path}: {exc.strerror} "
                "(sluice.example.toml is one to start from)"
            ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    settings = _from_dict(data)
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    return settings


def _from_dict(data: dict[str, Any]) -> Settings:
    s = Settings()
    server = data.get("server", {})
    s.host = server.get("host", s.host)
    s.port = int(server.get("port", s.port))
    s.max_body_bytes = int(server.get("max_body_bytes", s.max_body_bytes))
    s.log_level = server.get("log_level", s.log_level)
    log_format = server.get("log_format", s.log_format)
    if log_format not in LOG_FORMATS:
        raise ConfigError('server.log_format must be "text" or "json"')
    s.log_format = log_format
    for name in ("allowed_hosts", "allowed_origins", "cors_origins"):
        value = server.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"server.{name} must be a list of strings")
        setattr(s, name, [v.lower().rstrip("/") for v in value])
    s.auth = _auth(data.get("auth", {}))
    s.client_limits = _client_limits(server)
    store = data.get("store", {})
    for key in store:
        if key not in ("url", "journal_window", "keep_content"):
            raise ConfigError(f"store.{key} is not a setting (see docs/configuration.md)")
    s.store_url = store.get("url", s.store_url)
    keep_content = store.get("keep_content", s.keep_content)
    if not isinstance(keep_content, bool):
        raise ConfigError("store.keep_content must be true or false")
    s.keep_content = keep_content
    window = store.get("journal_window", s.journal_window)
    if isinstance(window, bool) or not isinstance(window, int | float) or not 0.01 <= window <= 5:
        raise ConfigError("store.journal_window must be a number of seconds from 0.01 to 5")
    s.journal_window = float(window)
    s.bus = _bus(data.get("bus", {}))
    s.telemetry = _telemetry(data.get("telemetry", {}))
    s.streams = _streams(data.get("streams", {}))
    s.ops = _ops(data.get("ops", {}))

    s.providers = default_providers()
    for name, raw in data.get("providers", {}).items():
        s.providers[name] = _provider(name, raw)
    s.prices = default_prices()
    for key, raw in data.get("prices", {}).items():
        try:
            s.prices[key] = Price(**raw)
        except TypeError as exc:
            raise ConfigError(f"prices.{key}: {exc}") from exc
    s.sim = dict(data.get("sim", {}))
    # With auth on, the simulator is mounted only when the file asks for it.
    s.embed_sim = bool(s.sim.pop("embedded", not s.auth.required))
    s.mcp = {name: _mcp_server(name, raw) for name, raw in _table(data, "mcp").items()}
    s.agents = {
        name: _agent(name, raw, s.providers, s.mcp) for name, raw in _table(data, "agents").items()
    }
    return s


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{key} must be tables: [{key}.NAME]")
    return table


def _name(section: str, name: str) -> None:
    if NAME_PATTERN.fullmatch(name) is None:
        raise ConfigError(
            f"{section}.{name}: a name is 1 to 64 letters, digits, '_' or '-' "
            "(it goes into URLs and tool names)"
        )


def _string_map(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where} must be a table of strings")
    return dict(value)


def _mcp_server(name: str, raw: dict[str, Any]) -> McpServerConfig:
    where = f"mcp.{name}"
    _name("mcp", name)
    if name in BUILTIN_TOOLS:
        raise ConfigError(f"{where}: {name!r} is a built-in tool's name; name the server otherwise")
    for key in raw:
        if key not in McpServerConfig.__dataclass_fields__ or key == "name":
            raise ConfigError(f"{where}.{key} is not a setting (see docs/agents.md)")
    server = McpServerConfig(name=name)
    has_command, has_url = "command" in raw, "url" in raw
    if has_command == has_url:
        raise ConfigError(f"{where} needs either command (stdio) or url (Streamable HTTP)")
    if has_command:
        command = raw["command"]
        if (
            not isinstance(command, list)
            or not command
            or not all(isinstance(part, str) and part for part in command)
        ):
            raise ConfigError(f"{where}.command must be a non-empty list of strings")
        server.command = list(command)
        if "headers" in raw:
            raise ConfigError(f"{where}.headers apply to a server reached by url")
        server.env = _string_map(f"{where}.env", raw.get("env", {}))
        cwd = raw.get("cwd")
        if cwd is not None and not (isinstance(cwd, str) and cwd):
            raise ConfigError(f"{where}.cwd must be a directory's path")
        server.cwd = cwd
    else:
        url = raw["url"]
        # The URL is not repeated: it may hold a token.
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url must be an http:// or https:// URL")
        server.url = url
        for key in ("env", "cwd"):
            if key in raw:
                raise ConfigError(f"{where}.{key} applies to a server run by command")
        server.headers = _string_map(f"{where}.headers", raw.get("headers", {}))
    timeout = raw.get("connect_timeout", server.connect_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ConfigError(f"{where}.connect_timeout must be a number of seconds up to 300")
    server.connect_timeout = float(timeout)
    return server


def _agent(
    name: str,
    raw: dict[str, Any],
    providers: dict[str, ProviderConfig],
    servers: dict[str, McpServerConfig],
) -> AgentConfig:
    where = f"agents.{name}"
    _name("agents", name)
    for key in raw:
        if key not in AgentConfig.__dataclass_fields__ or key == "name":
            raise ConfigError(f"{where}.{key} is not a setting (see docs/agents.md)")
    model = raw.get("model")
    if not isinstance(model, str) or "/" not in model or not all(model.partition("/")[::2]):
        raise ConfigError(f'{where}.model must be "provider/model"')
    provider = model.partition("/")[0]
    if provider not in providers:
        raise ConfigError(f"{where}.model: no provider {provider!r} (see [providers])")
    system = raw.get("system")
    if system is not None and not isinstance(system, str):
        raise ConfigError(f"{where}.system must be a string")
    tools = raw.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools):
        raise ConfigError(f"{where}.tools must be a list of strings")
    for entry in tools:
        server, dot, tool = entry.partition(".")
        if dot and server in servers and tool:
            continue
        if not dot and (entry in servers or entry in BUILTIN_TOOLS):
            continue
        raise ConfigError(
            f'{where}.tools: {entry!r} is neither an [mcp] server, "server.tool" of one, '
            f"nor a built-in tool ({', '.join(BUILTIN_TOOLS)})"
        )
    if len(set(tools)) != len(tools):
        raise ConfigError(f"{where}.tools names a tool twice")
    steps = raw.get("max_steps", 8)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 100:
        raise ConfigError(f"{where}.max_steps must be an integer from 1 to 100")
    timeout = raw.get("tool_timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise ConfigError(f"{where}.tool_timeout must be a number of seconds up to 3600")
    return AgentConfig(
        name=name,
        model=model,
        system=system,
        tools=list(tools),
        max_steps=steps,
        tool_timeout=float(timeout),
    )


def _auth(raw: dict[str, Any]) -> AuthSettings:
    auth = AuthSettings()
    for key, value in raw.items():
        if key not in AuthSettings.__dataclass_fields__:
            raise ConfigError(f"auth.{key} is not a setting (see docs/configuration.md)")
        if not isinstance(value, bool):
            raise ConfigError(f"auth.{key} must be true or false")
        setattr(auth, key, value)
    return auth


def _telemetry(raw: dict[str, Any]) -> TelemetrySettings:
    telemetry = TelemetrySettings()
    for key, value in raw.items():
        if key not in TelemetrySettings.__dataclass_fields__:
            raise ConfigError(f"telemetry.{key} is not a setting (see docs/configuration.md)")
        if not isinstance(value, bool):
            raise ConfigError(f"telemetry.{key} must be true or false")
        setattr(telemetry, key, value)
    return telemetry


def _bus(raw: dict[str, Any]) -> BusSettings:
    bus = BusSettings()
    for key, value in raw.items():
        if key not in BusSettings.__dataclass_fields__:
            raise ConfigError(f"bus.{key} is not a setting (see docs/configuration.md)")
        if key in ("url", "prefix"):
            if not isinstance(value, str):
                raise ConfigError(f"bus.{key} must be a string")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"bus.{key} must be a non-negative number")
        setattr(bus, key, value if key in ("url", "prefix") else float(value))
    bus.url = bus.url or None
    if bus.url is not None and not bus.url.startswith(BUS_SCHEMES):
        # The URL itself is not repeated: it may hold a password.
        raise ConfigError(f"bus.url must start with {', '.join(BUS_SCHEMES)}")
    if len(bus.prefix) > 64 or any(c in bus.prefix for c in "{} \t\r\n"):
        raise ConfigError("bus.prefix must be at most 64 characters, without braces or spaces")
    if bus.append_window > 1.0:
        raise ConfigError("bus.append_window must be at most 1 second")
    if bus.live_ttl < 60:
        raise ConfigError("bus.live_ttl must be at least 60 seconds")
    if not 0.5 <= bus.lease_ttl <= 300:
        raise ConfigError("bus.lease_ttl must be a number of seconds from 0.5 to 300")
    return bus


def _streams(raw: dict[str, Any]) -> StreamSettings:
    streams = StreamSettings()
    for key, value in raw.items():
        if key not in StreamSettings.__dataclass_fields__:
            raise ConfigError(f"streams.{key} is not a setting (see docs/configuration.md)")
        default = getattr(streams, key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"streams.{key} must be true or false")
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"streams.{key} must be a string")
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"streams.{key} must be a non-negative number")
        setattr(streams, key, type(default)(value))
    if streams.disconnect_policy not in DISCONNECT_POLICIES:
        raise ConfigError(
            f"streams.disconnect_policy must be one of {', '.join(DISCONNECT_POLICIES)}"
        )
    if streams.mid_stream_failure not in ("error", "retry"):
        raise ConfigError("streams.mid_stream_failure must be 'error' or 'retry'")
    if streams.max_line_bytes > streams.max_event_bytes:
        raise ConfigError("streams.max_line_bytes must not be over streams.max_event_bytes")
    if streams.max_stream_events <= streams.buffer_events:
        raise ConfigError("streams.max_stream_events must be over streams.buffer_events")
    for key in ("max_line_bytes", "max_event_bytes", "max_stream_bytes"):
        if getattr(streams, key) < 1024:
            raise ConfigError(f"streams.{key} must be at least 1024")
    return streams


def _client_limits(server: dict[str, Any]) -> ClientLimits:
    limits = ClientLimits()
    for key in ClientLimits.__dataclass_fields__:
        if key not in server:
            continue
        value, default = server[key], getattr(limits, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"server.{key} must be a non-negative number")
        if isinstance(default, int) and value != int(value):
            raise ConfigError(f"server.{key} must be an integer")
        if key != "max_connections" and not value:
            raise ConfigError(f"server.{key} must be more than 0")
        setattr(limits, key, type(default)(value))
    return limits


def _ops(raw: dict[str, Any]) -> OpsSettings:
    ops = OpsSettings()
    for key, value in raw.items():
        if key not in OpsSettings.__dataclass_fields__:
            raise ConfigError(f"ops.{key} is not a setting (see docs/configuration.md)")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"ops.{key} must be a number")
    low, high = OPS_FLUSH_BOUNDS
    interval = raw.get("flush_interval", ops.flush_interval)
    if not low <= interval <= high:
        raise ConfigError(f"ops.flush_interval must be between {low:g} and {high:g} seconds")
    recent = raw.get("recent_sessions", ops.recent_sessions)
    if not isinstance(recent, int) or recent < 0:
        raise ConfigError("ops.recent_sessions must be a non-negative integer")
    return OpsSettings(flush_interval=float(interval), recent_sessions=recent)


def _provider(name: str, raw: dict[str, Any]) -> ProviderConfig:
    if "/" in name:
        raise ConfigError(f"provider name {name!r} must not contain '/'")
    kind = raw.get("kind")
    kinds = provider_kinds()
    if kind not in kinds:
        raise ConfigError(f"providers.{name}.kind must be one of {', '.join(kinds)}")
    wire = raw.get("wire")
    wires = kind_wires(kind)
    if wire is not None and wire not in wires:
        raise ConfigError(f"providers.{name}.wire must be one of {', '.join(wires)} for {kind}")
    if "api_key" in raw:
        raise ConfigError(
            f"providers.{name}: keys are never written in the config file; "
            "name the environment variable that holds it with api_key_env"
        )
    known = formats.kinds().get(kind)
    provider = ProviderConfig(
        name=name,
        kind=kind,
        base_url=raw.get("base_url", None if known is None else known.base_url),
        api_key_env=raw.get("api_key_env", None if known is None else known.api_key_env),
        wire=wire,
        headers=dict(raw.get("headers", {})),
        models=list(raw.get("models", [])),
    )
    _provider_network(provider, raw)
    return provider


def _provider_network(provider: ProviderConfig, raw: dict[str, Any]) -> None:
    """The provider's transport and network settings (see docs/upstreams.md)."""
    where = f"providers.{provider.name}"
    for key in ("transport", "proxy", "ca_bundle", "client_cert", "client_key"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{where}.{key} must be a string")
    transport = raw.get("transport", "fast")
    if transport not in TRANSPORTS:
        raise ConfigError(f"{where}.transport must be one of {', '.join(TRANSPORTS)}")
    provider.transport = transport
    proxy = raw.get("proxy")
    if proxy:
        try:
            parse_proxy(proxy)
        except ProxyError as exc:
            raise ConfigError(f"{where}.proxy: {exc}") from None
    provider.proxy = proxy
    for key in ("ca_bundle", "client_cert", "client_key"):
        path = raw.get(key)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{where}.{key}: no such file {path!r}")
        setattr(provider, key, path)
    if provider.client_key is not None and provider.client_cert is None:
        raise ConfigError(f"{where}.client_key needs client_cert")
    if provider.sets_network and provider.base_url is None:
        raise ConfigError(
            f"{where}: transport and network settings apply to a provider with a base_url"
        )
