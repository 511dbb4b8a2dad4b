"""The ``rocketman`` command: worker, demo, plugins, emit, stats, subscriptions, dead-letters.

Exit codes a shell script can rely on: 0 success, 1 the operation failed (a
storage unreachable, a purge refused), 2 bad usage or configuration (an
unknown flag, an unknown backend, a module that does not import). Errors are
one line on stderr, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from ._backends import Durable
from ._contracts import STATS_KEYS, SUBSCRIPTION_COUNT_KEYS, SubscriptionInfo
from ._errors import ConfigurationError
from ._hosting import LIVE_WITHIN
from ._runtime import Rocketman
from ._text import duration, plural
from ._urls import mask_url

__all__ = ["main"]

logger = logging.getLogger("rocketman.cli")


class CommandError(Exception):
    """A failure the command reports in one line, with its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rocketman`` command; return its exit code."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Reported here rather than by parse_args so the line names the
        # sub-command whose flags were wrong.
        prog = f"rocketman {args.command}" if args.command else "rocketman"
        parser.exit(2, f"{prog}: unrecognized arguments: {' '.join(unknown)} (see {prog} --help)\n")
    if args.command is None:
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    # A worker narrates its life at INFO; the one-shot commands print their
    # result and keep stderr for warnings and the one-line error.
    quiet = logging.INFO if args.command == "worker" else logging.WARNING
    logging.basicConfig(
        level=logging.DEBUG if debug else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        result: int = args.handler(args)
        return result
    except CommandError as error:
        code, message = error.code, str(error)
    except ConfigurationError as error:
        if debug:
            logger.exception("configuration error")
        code, message = 2, str(error)
    except Exception as error:  # one line for the shell; the traceback with --debug
        if debug:
            logger.exception("failed")
        code, message = 1, f"{type(error).__name__}: {error}".rstrip(": ")
    print(f"rocketman {args.command}: {mask_url(message)}", file=sys.stderr)
    if not debug:
        # That line said what failed; the runtime's shutdown at exit would
        # only log the same failure again (an unreachable storage, say).
        logging.disable(logging.WARNING)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rocketman",
        description="Pub-sub for Python programs. Settings also come from ROCKETMAN_* variables.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, handler: Any, storage: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        if storage:
            sub.add_argument("--storage", help="storage name or URL (default: ROCKETMAN_STORAGE, else memory)")
        sub.add_argument("--debug", action="store_true", help="log at DEBUG level and show tracebacks")
        return sub

    worker = command("worker", "run the consumers of MODULEs until SIGTERM or SIGINT", _worker)
    worker.add_argument("modules", nargs="+", metavar="MODULE", help="modules to import; they register consumers")
    worker.add_argument("--workers", type=_non_negative_int, help="worker threads (ROCKETMAN_WORKER_COUNT, default 5)")
    worker.add_argument("--latency", type=float, help="seconds a worker blocks before re-checking for stop")
    worker.add_argument("--executor", help="executor name (default threads)")
    worker.add_argument("--relay", action="append", default=[], metavar="RELAY",
                        help="start a relay (name or URL); repeatable")
    worker.add_argument("--max-retries", type=_non_negative_int, help="retries before dead-lettering")
    worker.add_argument("--async-concurrency", type=_non_negative_int, metavar="N",
                        help="async consumers in flight at once (ROCKETMAN_ASYNC_CONCURRENCY, default 100)")

    command("demo", "show events flowing through memory storage and worker threads", _demo, storage=False)

    plugins = command("plugins", "list plugins, their distributions and what they provide", _plugins, storage=False)
    plugins.add_argument("--json", action="store_true", help="print JSON")

    emit = command("emit", "emit one event into the configured storage", _emit)
    emit.add_argument("name", help="the event name")
    emit.add_argument("--payload", default="null", help="the payload, as JSON (default null)")

    stats = command("stats", "count queued, reserved, delayed, dead, parked and dropped events", _stats)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.add_argument("--by-subscription", action="store_true",
                       help="also count each subscription's backlog")
    stats.add_argument("--watch", type=float, nargs="?", const=1.0, metavar="SECONDS",
                       help="refresh in place every SECONDS (default 1) until interrupted")

    subscriptions = command(
        "subscriptions",
        "list the subscriptions (each consumer's) with their backlog and hosts, or remove one",
        _subscriptions)
    subscriptions.add_argument("action", nargs="?", choices=["list", "remove"], default="list")
    subscriptions.add_argument("name", nargs="?", metavar="NAME", help="the subscription to remove")
    subscriptions.add_argument("--json", action="store_true", help="print JSON (list)")
    subscriptions.add_argument("--yes", action="store_true", help="remove without asking")

    dead = command("dead-letters", "list, replay or purge dead letters", _dead_letters)
    dead.add_argument("action", choices=["list", "replay", "purge"])
    dead.add_argument("--event", help="only events with this name (* patterns allowed)")
    dead.add_argument("--consumer", "--subscription", dest="consumer", metavar="NAME",
                      help="only this consumer's (its subscription name; * patterns allowed)")
    dead.add_argument("--limit", type=_non_negative_int, help="list at most this many")
    dead.add_argument("--json", action="store_true", help="print JSON (list)")
    dead.add_argument("--yes", action="store_true", help="purge without asking")
    return parser


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _app(args: argparse.Namespace, **settings: Any) -> Rocketman:
    """A runtime configured from the flags given, then ROCKETMAN_*, then defaults."""
    if getattr(args, "storage", None):
        settings["storage"] = args.storage
    app = Rocketman()
    app.configure(**settings)
    return app


def _durable(storage: object) -> bool:
    return isinstance(storage, Durable) and storage.durable is True


def _shared_storage(app: Rocketman) -> None:
    # Builds the storage (connecting to nothing): a command then fails on
    # what it does, not on a count it did not ask for.
    if not _durable(app.storage):
        raise CommandError(
            f"the storage {mask_url(str(app.settings.storage))!r} lives inside one process, so "
            "this command cannot reach another process's events. Use a shared storage: "
            "--storage NAME_OR_URL or ROCKETMAN_STORAGE (`rocketman plugins` lists the storages).",
            code=2,
        )


# -- worker ------------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    flags: dict[str, Any] = {}
    for flag, key in (("workers", "worker_count"), ("latency", "latency"),
                      ("executor", "executor"), ("max_retries", "max_retries"),
                      ("async_concurrency", "async_concurrency")):
        if getattr(args, flag) is not None:
            flags[key] = getattr(args, flag)
    if flags.get("worker_count") == 0:
        raise CommandError("--workers 0 runs no consumer: give 1 or more (a process that only "
                           "emits needs no worker command)", code=2)
    if args.relay:
        flags["relays"] = args.relay
    if args.debug:
        flags["debug"] = True
    if args.storage:
        flags["storage"] = args.storage
    import rocketman_core

    app = rocketman_core.current()
    configured = app.configure(**flags)
    # The backends' own dependencies (redis-py...) are imported before the
    # application's folder goes first on sys.path: a redis.py of the
    # application's cannot take redis-py's place. Building them connects to
    # nothing; it also checks their options now.
    app._check_backends()
    sys.path.insert(0, os.getcwd())
    for module in args.modules:
        try:
            importlib.import_module(module)
        except Exception as error:
            raise CommandError(f"cannot import {module!r}: {type(error).__name__}: {error}", code=2) from error
    if app.settings is not configured:
        _keep_the_command_line(app, flags)
    consumers = app.consumers.all()
    if not consumers:
        logger.warning("no consumer registered by %s: this worker hosts no subscription and "
                       "takes nothing", ", ".join(args.modules))

    # The handler only records the signal: no lock, no logging. A handler that
    # set a threading.Event could re-enter the Event's lock, held by the very
    # thread it interrupted, and hang the worker for ever (a burst of signals).
    received: list[int] = []

    def request_stop(signum: int, frame: Any) -> None:
        received.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    app.start()
    current = app.settings
    if not _durable(app.storage) and not current.relays:
        logger.warning("the storage %s lives in this process: no other process can emit into "
                       "it, so this worker only handles what its own modules emit. Use a shared "
                       "storage, --storage NAME_OR_URL or ROCKETMAN_STORAGE (`rocketman plugins` "
                       "lists the storages), or --relay", _describe(current.storage))
    logger.info(
        "rocketman worker started (pid %d): storage %s, %s, relays %s, consumers: %s",
        os.getpid(), _describe(current.storage), plural(current.worker_count, "worker"),
        ", ".join(_describe(r) for r in current.relays) or "none",
        ", ".join(f"{c.name} on {' '.join(c.patterns)!r}" for c in consumers) or "none",
    )
    while not received:
        time.sleep(0.1)  # a signal ends the sleep early
    logger.info("received %s: stopping (again to stop at once)", signal.Signals(received[0]).name)
    outcome: list[bool] = []
    stopper = threading.Thread(target=lambda: outcome.append(app.shutdown()),
                               name="rocketman-worker-stop", daemon=True)
    stopper.start()
    while stopper.is_alive():
        stopper.join(0.1)
        # Any signal after the first stops now. (Counted from here, one that
        # arrived while the first was being logged was taken for the first,
        # and the worker waited for its consumers. Two signals sent at the
        # same instant are one to Python: it runs a handler once per delivery
        # it sees, so those stop gracefully.)
        if len(received) > 1:
            given = app._give_back_held()
            logger.warning("received %s again: stopping now; %s the workers held given back, "
                           "not finished", signal.Signals(received[-1]).name, plural(given, "event"))
            logging.shutdown()
            os._exit(0)
    clean = bool(outcome and outcome[0])
    logger.info("rocketman worker stopped%s", "" if clean else " (some events were left, see above)")
    # Stopped as asked: signals still coming (a burst) must not kill the
    # exit, which CPython does once it puts back their default action.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


def _keep_the_command_line(app: Rocketman, flags: dict[str, Any]) -> None:
    """A module called configure() at import (a web app's line): the command line wins over it."""
    from ._config import Settings

    theirs = app.settings
    given = {name: getattr(theirs, name) for name in Settings._fields}
    given.update(flags)
    if given["worker_count"] == 0:
        # "worker_count=0" is a producer's setting; this process is a worker.
        given["worker_count"] = Settings.resolve({}).worker_count or Settings().worker_count
    app.configure(**given)
    kept = app.settings
    logger.warning(
        "a module imported by this worker called rocketman.configure() (storage %s, %s); "
        "the worker's command line and ROCKETMAN_* win: storage %s, %s",
        _describe(theirs.storage), plural(theirs.worker_count, "worker"),
        _describe(kept.storage), plural(kept.worker_count, "worker"),
    )


def _describe(spec: Any) -> str:
    return mask_url(spec) if isinstance(spec, str) else type(spec).__name__


# -- demo --------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run

    return run()


# -- plugins -----------------------------------------------------------------


def _with_schemes(names: list[str], schemes: dict[str, list[str]]) -> str:
    """``redis (redis://, rediss://, unix://)``: each backend with the URL schemes that select it."""
    return ", ".join(
        f"{name} ({', '.join(f'{scheme}://' for scheme in schemes.get(name, [name]))})" for name in names)


def _plugins(args: argparse.Namespace) -> int:
    app = Rocketman()
    app.plugins.load()
    infos = sorted(app.plugins.infos.values(), key=lambda i: i.name)
    rows: list[dict[str, Any]] = [
        {
            "name": info.name,
            "module": info.module,
            "distribution": info.distribution,
            "version": info.version,
            "provides": info.provides,
            "schemes": info.schemes,
            "disabled": info.disabled,
            "error": info.error,
        }
        for info in infos
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [
        (
            row["name"],
            f"{row['distribution']} {row['version']}" if row["distribution"] else "(in code)",
            "disabled" if row["disabled"] else ("FAILED" if row["error"] else "ok"),
            "; ".join(f"{kind} {_with_schemes(names, row['schemes'].get(kind, {}))}"
                      for kind, names in row["provides"].items()) or "-",
        )
        for row in rows
    ]
    widths = [max([len(header)] + [len(line[i]) for line in table])
              for i, header in enumerate(("PLUGIN", "DISTRIBUTION", "STATUS"))]
    print(f"{'PLUGIN':<{widths[0]}}  {'DISTRIBUTION':<{widths[1]}}  {'STATUS':<{widths[2]}}  PROVIDES")
    for row, (name, origin, status, provides) in zip(rows, table, strict=True):
        print(f"{name:<{widths[0]}}  {origin:<{widths[1]}}  {status:<{widths[2]}}  {provides}")
        if row["error"]:
            print(f"{'':<{widths[0]}}  error: {row['error']}")
    return 0


# -- emit, stats, dead letters -----------------------------------------------


def _emit(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as error:
        raise CommandError(f"--payload is not valid JSON: {error}", code=2) from None
    app = _app(args, worker_count=0)
    _shared_storage(app)
    try:
        event_id = app.emit(args.name, payload)
    except ValueError as error:
        raise CommandError(str(error), code=2) from None
    print(event_id)
    app.shutdown(timeout=0)
    return 0


def _stats(args: argparse.Namespace) -> int:
    app = _app(args, worker_count=0)
    _shared_storage(app)

    def show() -> str:
        if not args.by_subscription:
            counts = app.stats()
            if args.json:
                return json.dumps({key: counts[key] for key in STATS_KEYS})
            return "  ".join(f"{key} {counts[key]}" for key in STATS_KEYS)
        counts = app.stats()
        infos = app.subscriptions()
        if args.json:
            return json.dumps({
                "totals": {key: counts[key] for key in STATS_KEYS},
                "subscriptions": {i.name: {k: i.counts[k] for k in SUBSCRIPTION_COUNT_KEYS}
                                  for i in infos},
            })
        rows = [("TOTAL", *(str(counts[k]) for k in SUBSCRIPTION_COUNT_KEYS))]
        rows += [(i.name, *(str(i.counts[k]) for k in SUBSCRIPTION_COUNT_KEYS)) for i in infos]
        table = _table(("SUBSCRIPTION", *(k.upper() for k in SUBSCRIPTION_COUNT_KEYS)), rows)
        return f"{table}\nparked {counts['parked']}  dropped {counts['dropped']}"

    if args.watch is None:
        print(show())
        return 0
    try:
        while True:
            line = show()
            if sys.stdout.isatty() and "\n" not in line:
                sys.stdout.write(f"\r\x1b[K{line}")
            elif sys.stdout.isatty():
                sys.stdout.write(f"\x1b[H\x1b[J{line}\n")
            else:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        print()
        return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns sized to their content: text left-aligned, counts right-aligned."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    numeric = [bool(rows) and all(row[i].isdigit() for row in rows) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        cells = [cell.rjust(width) if right else cell.ljust(width)
                 for cell, width, right in zip(row, widths, numeric, strict=True)]
        return "  ".join(cells).rstrip()

    return "\n".join(line(row) for row in (headers, *rows))


def _ago(seconds: float) -> str:
    return "now" if seconds < 2 else f"{duration(seconds)} ago"


def _host_label(host: str) -> str:
    # hostname:pid:random -> hostname:pid (the random part only makes it unique).
    return host.rsplit(":", 1)[0] if host.count(":") >= 2 else host


def _describe_subscription(info: SubscriptionInfo, now: float, stale_after: float) -> dict[str, Any]:
    live = sorted(h for h, seen in info.hosts.items() if now - seen <= LIVE_WITHIN)
    seen = info.last_seen
    idle = now - (seen if seen is not None else info.created_at)
    status = "live" if live else ("STALE" if idle > stale_after else "no live host")
    return {
        "name": info.name,
        "patterns": list(info.patterns),
        "counts": {key: info.counts[key] for key in SUBSCRIPTION_COUNT_KEYS},
        "status": status,
        "live_hosts": live,
        "hosts": [{"host": host, "last_seen": when, "live": host in live}
                  for host, when in sorted(info.hosts.items(), key=lambda item: -item[1])],
        "last_seen": seen,
        "created_at": info.created_at,
    }


def _subscriptions(args: argparse.Namespace) -> int:
    app = _app(args, worker_count=0)
    _shared_storage(app)
    now = time.time()
    stale_after = app.settings.subscription_stale_after
    described = [_describe_subscription(i, now, stale_after) for i in app.subscriptions()]
    if args.action == "remove":
        return _remove_subscription(app, args, described)
    if args.name:
        raise CommandError("a NAME is only for `rocketman subscriptions remove NAME`", code=2)
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    if not described:
        print("no subscriptions: none is created until a worker hosting consumers starts", file=sys.stderr)
        return 0
    rows = []
    for d in described:
        hosts = ", ".join(_host_label(h) for h in d["live_hosts"]) or "-"
        seen = "never" if d["last_seen"] is None else _ago(now - d["last_seen"])
        rows.append((d["name"], " ".join(d["patterns"]),
                     *(str(d["counts"][k]) for k in SUBSCRIPTION_COUNT_KEYS), hosts, seen, d["status"]))
    print(_table(("SUBSCRIPTION", "PATTERNS", *(k.upper() for k in SUBSCRIPTION_COUNT_KEYS),
                  "LIVE HOSTS", "LAST SEEN", "STATUS"), rows))
    stale = [d["name"] for d in described if d["status"] == "STALE"]
    if stale:
        print(f"{plural(len(stale), 'subscription')} had no live host for more than "
              f"{stale_after:g}s: start what hosts them, or `rocketman subscriptions remove NAME`",
              file=sys.stderr)
    return 0


def _remove_subscription(app: Rocketman, args: argparse.Namespace,
                         described: list[dict[str, Any]]) -> int:
    if not args.name:
        raise CommandError("which one? `rocketman subscriptions remove NAME`", code=2)
    found = next((d for d in described if d["name"] == args.name), None)
    if found is None:
        import difflib

        close = difflib.get_close_matches(args.name, [d["name"] for d in described], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; `rocketman subscriptions` lists them"
        raise CommandError(f"no subscription named {args.name!r}{hint}", code=1)
    if found["live_hosts"]:
        raise CommandError(
            f"the subscription {args.name!r} is hosted by live processes "
            f"({', '.join(_host_label(h) for h in found['live_hosts'])}), which would register it "
            "again: stop them (or deploy them without its consumer) first", code=1)
    backlog = ", ".join(f"{k} {v}" for k, v in found["counts"].items())
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(f"refusing to remove the subscription {args.name!r} ({backlog}) "
                               "without --yes", code=1)
        answer = input(f"Remove the subscription {args.name!r} with its backlog ({backlog})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return 1
    app.remove_subscription(args.name)
    print(f"removed the subscription {args.name!r} ({backlog})")
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    app = _app(args, worker_count=0)
    _shared_storage(app)
    filters = {"event": args.event, "consumer": args.consumer}
    if args.action == "list":
        records = app.dead_letters(limit=args.limit, **filters)
        if args.json:
            print(json.dumps([_record_json(r) for r in records], indent=2))
            return 0
        for r in records:
            name = r.event.name if r.event else "(malformed)"
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.failed_at))
            print(f"{r.id}  {when}  {name}  {r.consumer or '-'}  attempts {r.attempts}  {r.reason}")
        print(plural(len(records), "dead letter"), file=sys.stderr)
        return 0
    if args.action == "replay":
        print(f"{plural(app.replay_dead_letters(**filters), 'dead letter')} replayed")
        return 0
    # Without a filter the count is in the stats: no need to list them all.
    count = app.stats()["dead"] if not any(filters.values()) else len(app.dead_letters(**filters))
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError(f"refusing to purge {plural(count, 'dead letter')} without --yes", code=1)
        answer = input(f"Purge {plural(count, 'dead letter')}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing purged")
            return 1
    print(f"{plural(app.purge_dead_letters(**filters), 'dead letter')} purged")
    return 0


def _record_json(record: Any) -> dict[str, Any]:
    event = record.event
    return {
        "id": record.id,
        "event": None if event is None else {
            "id": event.id, "name": event.name, "payload": event.payload,
            "emitted_at": event.emitted_at, "attempt": event.attempt,
        },
        "consumer": record.consumer,
        "attempts": record.attempts,
        "failed_at": record.failed_at,
        "reason": record.reason,
        "error": record.error,
        "message": None if event else record.message.decode("utf-8", "replace"),
    }


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

