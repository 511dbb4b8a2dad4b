"""The core names no backend: it finds them through entry points (STYLE 12).

The rule, as these tests read it, over every ``rocketman_core/**/*.py``:

1. **No other backend in the core's code.** No import, name, attribute,
   argument or string literal names a backend the core does not ship
   (Redis, NATS, Kafka, SQS, RabbitMQ/AMQP, MQTT, Pulsar, Kinesis, Postgres,
   MySQL, ZeroMQ, memcached), in any case. Documentation is not code:
   comments and docstrings (a string that is a statement by itself) may cite
   one as an example, as ``mask_url``'s does ``redis://token@host``.
2. **The two defaults, by name, only where the core chooses its defaults.**
   The distributions ``rocketman_memory`` and ``rocketman_threads`` are never
   imported nor named in code. The string literals ``"memory"`` and
   ``"threads"`` (or a ``memory://`` URL), which select them, appear only in
   ``_config.py`` (the defaults of ``Settings``) and ``_demo.py`` (``rocketman
   demo`` runs the defaults whatever the environment says). Prose that says
   what the defaults are (the CLI's ``--help``: "else memory") is allowed;
   code that wants the default storage elsewhere reads ``Settings().storage``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import rocketman_core

CORE = Path(rocketman_core.__file__).parent

OTHER_BACKENDS = {"redis", "rediss", "nats", "kafka", "sqs", "rabbitmq", "amqp", "mqtt", "pulsar",
                  "kinesis", "postgres", "postgresql", "mysql", "zeromq", "zmq", "memcached"}
DEFAULT_DISTRIBUTIONS = re.compile(r"rocketman[_-](memory|threads)", re.IGNORECASE)
# The words of a name or a text: snake_case, CamelCase, URLs (RedisRelay: redis, relay).
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
DEFAULT_NAMES = re.compile(r"(memory|threads)(://.*)?", re.IGNORECASE)
#: Where the core chooses its defaults, and may so name them.
DEFAULTS_NAMED_IN = {"_config.py", "_demo.py"}


def code_words(source: str) -> Iterator[tuple[int, str, bool]]:
    """``(line, text, is_string)`` for every name and string literal of ``source``'s code.

    Comments are not in the syntax tree; docstrings (string statements) are left out.
    """
    tree = ast.parse(source)
    documentation = {
        id(node.value) for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in documentation:
                yield line, node.value, True
        elif isinstance(node, ast.Name):
            yield line, node.id, False
        elif isinstance(node, ast.Attribute):
            yield line, node.attr, False
        elif isinstance(node, ast.alias):
            yield line, node.name, False
            if node.asname:
                yield line, node.asname, False
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield line, node.module, False
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield line, node.name, False
        elif isinstance(node, (ast.arg, ast.keyword)) and node.arg:
            yield line, node.arg, False


def mentions(source: str, *, defaults_allowed: bool) -> list[tuple[int, str]]:
    """What breaks the rule in one module's source: ``(line, the name or literal)``."""
    found = []
    for line, text, is_string in code_words(source):
        words = {word.lower() for word in _WORDS.findall(text)}
        other_backend = bool(words & OTHER_BACKENDS or DEFAULT_DISTRIBUTIONS.search(text))
        default_named = is_string and bool(DEFAULT_NAMES.fullmatch(text.strip()))
        if other_backend or (default_named and not defaults_allowed):
            found.append((line, text))
    return sorted(found)


def core_modules() -> list[Path]:
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) > 20, f"found only {len(modules)} modules under {CORE}"
    return modules


def test_the_core_names_no_backend_in_its_code() -> None:
    """Rule 1 and 2 over every module of the core."""
    found = [
        f"{path.relative_to(CORE)}:{line}: {text!r}"
        for path in core_modules()
        for line, text in mentions(path.read_text(encoding="utf-8"),
                                   defaults_allowed=path.relative_to(CORE).as_posix()
                                   in DEFAULTS_NAMED_IN)
    ]
    assert not found, "the core's code names a backend:\n" + "\n".join(found)


def test_the_defaults_are_named_where_the_core_chooses_them() -> None:
    """The allowance is not empty words: ``Settings`` does name ``memory`` and ``threads``."""
    defaults = [text for _, text, is_string in code_words((CORE / "_config.py").read_text())
                if is_string and DEFAULT_NAMES.fullmatch(text)]
    assert {"memory", "threads"} <= set(defaults), defaults


def test_the_rule_reads_code_and_leaves_documentation_alone() -> None:
    """The scanner sees imports, names, literals and f-strings; not comments, nor docstrings."""
    caught = '''
import redis
from rocketman_relay_redis import RedisRelay
url = "nats://127.0.0.1:4222"
message = f"use {kind} with --storage kafka://host"
def build(mqtt_topic): ...
app.configure(storage="memory")
'''
    assert [line for line, _ in mentions(caught, defaults_allowed=False)] == [2, 3, 3, 4, 5, 6, 7]
    assert [line for line, _ in mentions(caught, defaults_allowed=True)] == [2, 3, 3, 4, 5, 6]
    ignored = '''
"""A storage such as Redis, selected by redis://host."""
# a comment naming NATS and kafka
def f():
    """Like rocketman_memory's, with threads."""
    return "worker threads in memory"  # prose, not a name: allowed
'''
    assert mentions(ignored, defaults_allowed=False) == []
