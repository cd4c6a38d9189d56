"""The ``sluice`` command: ``serve``, ``keys``, ``db``, ``sim``, ``demo``, ``bench`` and
``doctor``."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys

from sluice.config import ConfigError, Settings, default_providers, load_settings
from sluice.listen import BACKLOG, ListenError, listening_sockets
from sluice.logs import setup_logging


def exposure_refusal(settings: Settings, insecure: bool) -> str | None:
    """Why ``serve`` must not start: an address other than loopback with auth off."""
    if settings.auth.required or insecure or is_loopback(settings.host):
        return None
    return (
        f"refusing to serve on {settings.host} without client keys: set [auth] required = true "
        "(docs/security.md), or pass --insecure-no-auth to let anyone who reaches the port "
        "use it"
    )


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark parses its own options
        from sluice.bench.cli import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["doctor"]:  # so does the doctor
        from sluice.doctor import main as doctor_main

        return doctor_main(argv[1:])
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--config", help="TOML configuration file")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve on a non-loopback address with [auth] required off (anyone can use it)",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="gateway processes on the one port (default 1; more need [bus] url: "
        "docs/deployment.md)",
    )
    serve.add_argument("--worker-sockets", help=argparse.SUPPRESS)

    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=("client", "viewer", "operator"), default="client")
    create.add_argument("--tenant", help="whose sessions the key's are (default: its name)")
    create.add_argument("--models", help="comma-separated model globs the key may use")
    create.add_argument("--budget", type=float, help="US dollars the key may spend")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--max-streams", type=int, help="live sessions at once")
    create.add_argument("--expires", type=float, help="seconds from now until the key expires")
    create.add_argument("--config", help="TOML configuration file")
    listing = key_commands.add_parser("list", help="list the keys (never the keys themselves)")
    listing.add_argument("--config", help="TOML configuration file")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its name or prefix")
    revoke.add_argument("key", metavar="NAME|PREFIX")
    revoke.add_argument("--config", help="TOML configuration file")

    db = commands.add_parser("db", help="the store's schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="migrate the store's schema to its head")
    upgrade.add_argument("--config", help="TOML configuration file")

    sim = commands.add_parser("sim", help="run the provider simulator on its own")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument("--token-rate", type=float)
    sim.add_argument("--ttft", type=float)
    sim.add_argument("--jitter", type=float)
    sim.add_argument("--output-tokens", type=int)

    demo = commands.add_parser("demo", help="stream one support answer through the gateway")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--config", help="TOML configuration file")
    demo.add_argument("--once", action="store_true", help="exit after the demo stream")

    commands.add_parser(
        "bench", help="measure what the gateway adds (docs/benchmarks.md)", add_help=False
    )
    commands.add_parser(
        "doctor", help="check that streams stream through the path to a gateway", add_help=False
    )

    args = parser.parse_args(argv)
    from sluice.gateway.server import install_uvloop

    install_uvloop()
    try:
        if args.command == "keys":
            from sluice.access.cli import run_keys

            return run_keys(args, load_settings(args.config))
        if args.command == "db":
            from sluice.dbcli import run_db

            return run_db(args, load_settings(args.config))
        if args.command == "serve":
            settings = load_settings(args.config, host=args.host, port=args.port)
            exposed = exposure_refusal(settings, args.insecure_no_auth)
            if exposed is not None:
                print(f"sluice: {exposed}", file=sys.stderr)
                return 2
            require_keys(settings)
            setup_logging(settings.log_level, settings.log_format)
            from sluice.gateway import workers
            from sluice.gateway.server import serve_forever

            if args.worker_sockets is not None:  # one of the processes of --workers N
                sockets = workers.worker_sockets(args.worker_sockets)
                asyncio.run(serve_forever(settings, sockets, announce=False))
                return 0
            if args.workers > 1:
                refused = workers.bus_refusal(args.workers, settings.bus.url)
                if refused is not None:
                    print(f"sluice: {refused}", file=sys.stderr)
                    return 2
                argv = [sys.executable, "-m", "sluice.cli", *worker_argv(args, settings)]
                return workers.run_workers(argv, settings.host, settings.port, args.workers)
            asyncio.run(serve_forever(settings))
        elif args.command == "sim":
            from sluice.sim import SimSettings, serve_sim

            overrides = {
                k: v
                for k, v in {
                    "token_rate": args.token_rate,
                    "ttft": args.ttft,
                    "jitter": args.jitter,
                    "output_tokens": args.output_tokens,
                }.items()
                if v is not None
            }
            # a port in use: one line; listening before the line, so that a client that
            # connects on reading it waits in the queue while the simulator starts
            (sock,) = listening_sockets(args.host, args.port, 1)
            sock.listen(BACKLOG)
            port = sock.getsockname()[1]
            print(f"sluice simulator listening on http://{args.host}:{port}", flush=True)
            asyncio.run(serve_sim(args.host, port, SimSettings(**overrides), sockets=[sock]))
        else:
            settings = load_settings(args.config, host=args.host, port=args.port)
            setup_logging("warning")
            from sluice.demo import run_demo

            return asyncio.run(run_demo(settings, once=args.once))
    except ConfigError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 2
    except ListenError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def worker_argv(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The ``sluice serve`` command line of one worker of ``--workers N``: the same
    configuration (``--worker-sockets`` is added by the supervisor)."""
    argv = ["serve", "--host", settings.host, "--port", str(settings.port)]
    if args.config:
        argv += ["--config", args.config]
    if args.insecure_no_auth:
        argv.append("--insecure-no-auth")
    return argv


def require_keys(settings: Settings) -> None:
    """Refuse to start when a provider the configuration declares has no key in the
    environment: every request to it would fail. The key is still read on every request (a
    rotated key needs no restart); the default ``openai`` and ``anthropic`` providers, left as
    they are, need none at start."""
    defaults = default_providers()
    for name, provider in settings.providers.items():
        if not provider.needs_key or provider == defaults.get(name):
            continue
        if provider.api_key() is None:
            raise ConfigError(
                f"provider {name} has no key: the environment variable {provider.api_key_env} "
                f"is not set; export it before starting (or remove [providers.{name}])"
            )


if __name__ == "__main__":
    sys.exit(main())
