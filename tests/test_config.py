"""The TOML configuration: defaults, providers, prices, and refusals of impossible settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from sluice.config import (
    AuthSettings,
    BusSettings,
    ClientLimits,
    ConfigError,
    OpsSettings,
    StreamSettings,
    TelemetrySettings,
    load_settings,
)
from sluice.sim import SimSettings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluice.toml"
    path.write_text(text)
    return path


def test_no_file_means_embedded_defaults() -> None:
    settings = load_settings(None)
    assert settings.store_url == "sqlite:///var/sluice.db" and settings.embed_sim
    assert {"sim", "openai", "anthropic"} <= set(settings.providers)
    assert settings.providers["openai"].api_key_env == "OPENAI_API_KEY"
    assert settings.providers["anthropic"].base_url == "https://api.anthropic.com/v1"


def test_a_file_adds_providers_prices_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
port = 9999
max_body_bytes = 2048
[store]
url = "memory://"
[streams]
disconnect_policy = "drain"
[providers.vllm]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1"
api_key_env = "VLLM_KEY"
models = ["llama"]
[prices."vllm/*"]
input = 0.1
output = 0.2
[sim]
token_rate = 99
embedded = false
""",
    )
    settings = load_settings(path, port=1234)
    assert settings.port == 1234 and settings.max_body_bytes == 2048
    assert settings.store_url == "memory://" and settings.streams.disconnect_policy == "drain"
    vllm = settings.providers["vllm"]
    assert (vllm.kind, vllm.base_url, vllm.models) == (
        "openai",
        "http://127.0.0.1:8000/v1",
        ["llama"],
    )
    assert vllm.wires == ("chat", "responses")
    assert settings.prices["vllm/*"].output == 0.2
    assert settings.sim == {"token_rate": 99} and settings.embed_sim is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[providers.x]\nkind = "cohere"', "kind must be one of"),
        ('[providers.x]\nkind = "anthropic"\nwire = "chat"', "wire must be one of"),
        ('[providers.x]\nkind = "openai"\napi_key = "secret"', "never written in the config"),
        ('[streams]\ndisconnect_policy = "pray"', "disconnect_policy"),
        ("[streams]\nheartbeat_interval = -1", "non-negative number"),
        ("[streams]\nheartbeat = 5", "not a setting"),
        ("[server\nport = 1", "not valid TOML"),
        ("[server]\nheader_timeout = 0", "more than 0"),
        ("[server]\nidle_timeout = -5", "non-negative number"),
        ("[server]\nmax_header_bytes = 1.5", "must be an integer"),
        ('[server]\nbody_timeout = "slow"', "non-negative number"),
        ("[streams]\nmax_line_bytes = 9000000", "max_line_bytes must not be over"),
        ("[streams]\nmax_stream_events = 100", "must be over streams.buffer_events"),
        ("[streams]\nmax_stream_bytes = 10", "max_stream_bytes must be at least 1024"),
        ('[server]\nlog_format = "xml"', 'log_format must be "text" or "json"'),
        ("[server]\nlog_format = true", 'log_format must be "text" or "json"'),
    ],
)
def test_impossible_settings_are_refused_with_a_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_log_format_is_text_unless_the_file_says_json(tmp_path: Path) -> None:
    assert load_settings(None).log_format == "text"
    path = write(tmp_path, '[server]\nlog_format = "json"')
    assert load_settings(path).log_format == "json"


def test_a_refused_key_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, '[providers.x]\nkind = "openai"\napi_key = "sk-very-secret"')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "sk-very-secret" not in str(info.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml")


def test_the_client_bounds_are_read_from_the_server_table(tmp_path: Path) -> None:
    defaults = load_settings(None).client_limits
    assert (defaults.header_timeout, defaults.max_header_bytes, defaults.max_connections) == (
        10.0,
        32_768,
        0,
    )
    text = "[server]\nheader_timeout = 3\nmax_header_bytes = 8192\nmax_connections = 100\n"
    limits = load_settings(write(tmp_path, text)).client_limits
    assert (limits.header_timeout, limits.max_header_bytes, limits.max_connections) == (
        3.0,
        8192,
        100,
    )
    assert isinstance(limits.header_timeout, float) and limits.idle_timeout == 75.0


def test_the_bus_is_in_process_unless_a_redis_url_is_set(tmp_path: Path) -> None:
    assert load_settings(None).bus.url is None
    path = write(
        tmp_path,
        '[bus]\nurl = "redis://127.0.0.1:6379/0"\nprefix = "prod:"\nappend_window = 0.01\n',
    )
    bus = load_settings(path).bus
    assert (bus.url, bus.prefix, bus.append_window) == ("redis://127.0.0.1:6379/0", "prod:", 0.01)
    assert bus.live_ttl == 86400.0
    assert load_settings(write(tmp_path, '[bus]\nurl = ""\n')).bus.url is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[bus]\nurl = "postgresql://x"', "must start with redis://"),
        ('[bus]\nprefix = "{tag}:"', "without braces"),
        ("[bus]\nprefix = 5", "must be a string"),
        ("[bus]\nappend_window = 2", "at most 1 second"),
        ("[bus]\nlive_ttl = 1", "at least 60 seconds"),
        ("[bus]\nhost = 1", "not a setting"),
    ],
)
def test_impossible_bus_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_a_refused_bus_url_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, '[bus]\nurl = "redus://:hunter2@db:6379"')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "hunter2" not in str(info.value)


EXAMPLE = Path(__file__).resolve().parents[1] / "sluice.example.toml"


def test_the_example_file_loads_and_says_every_default() -> None:
    example = load_settings(EXAMPLE)
    defaults = load_settings(None)
    sim = example.sim
    example.sim = defaults.sim = {}
    assert example == defaults
    simulator = SimSettings()
    assert {key: getattr(simulator, key) for key in sim} == sim


def test_the_example_file_has_every_section_and_key() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert set(data["streams"]) == set(StreamSettings.__dataclass_fields__)
    assert set(data["ops"]) == set(OpsSettings.__dataclass_fields__)
    assert set(data["server"]) == {
        "host",
        "port",
        "max_body_bytes",
        "log_level",
        "log_format",
        "allowed_hosts",
        "allowed_origins",
        "cors_origins",
        *ClientLimits.__dataclass_fields__,
    }
    assert set(data["auth"]) == set(AuthSettings.__dataclass_fields__)
    assert set(data["bus"]) == set(BusSettings.__dataclass_fields__)
    assert set(data["store"]) == {"url", "journal_window"}
    assert set(data["telemetry"]) == set(TelemetrySettings.__dataclass_fields__)
    sections = {"server", "auth", "store", "bus", "telemetry", "streams", "ops", "sim", "prices"}
    assert set(data) == sections


def test_the_example_providers_load_once_uncommented(tmp_path: Path) -> None:
    text = re.sub(r"(?m)^# (?=\[|\w+ = )", "", EXAMPLE.read_text())
    settings = load_settings(write(tmp_path, text))
    assert settings.providers["vllm"].models == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert settings.providers["openai"].wires == ("chat",)
    assert settings.prices["vllm/*"].output == 0.0
    assert settings.agents["support"].tools[:2] == ["orders", "search.web_search"]
    assert settings.mcp["search"].transport == "http"
