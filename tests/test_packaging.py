"""The distributions build, carry their own files, and install without an index (hardening 29, 30)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def test_the_core_sdist_carries_only_its_own_files(tmp_path: Path) -> None:
    """Unanchored include patterns took every distribution's README.md and pyproject.toml."""
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    (sdist,) = tmp_path.glob("rocketman_core-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
        readme = archive.extractfile(next(m for m in archive.getmembers() if m.name.endswith("/README.md")))
        assert readme is not None and readme.read().decode() == (ROOT / "README.md").read_text()
    strays = [n for n in names if not n.startswith("rocketman_core/")
              and n not in {"README.md", "pyproject.toml", "LICENSE", "PKG-INFO", ".gitignore"}]
    assert not strays, f"the core's sdist carries {strays}"
    assert "rocketman_core/py.typed" in names and "LICENSE" in names


def test_make_wheels_lets_a_machine_without_an_index_install_rocketman_redis(
    tmp_path: Path, rocketman_redis_server: Any,
) -> None:
    """The README's offline install: `make wheels`, then pip with --no-index, then a real emit."""
    dist = tmp_path / "dist"
    made = subprocess.run(["make", "wheels", f"DIST={dist}", f"VENV={sys.prefix}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    wheels = {path.name.split("-")[0] for path in dist.glob("*.whl")}
    assert {"rocketman_core", "rocketman_memory", "rocketman_threads", "rocketman_redis",
            "rocketman_relay_redis", "rocketman_nats", "redis", "pluggy"} <= wheels, wheels

    venv = tmp_path / "offline"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--no-index", "--find-links", str(dist), "rocketman-redis"],
        capture_output=True, text=True, timeout=300, env=environment)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    plugins = subprocess.run([str(venv / "bin" / "rocketman"), "plugins", "--json"],
                             capture_output=True, text=True, timeout=60, env=environment)
    assert plugins.returncode == 0, plugins.stderr
    assert any("redis" in row["provides"].get("storage", []) for row in json.loads(plugins.stdout))
    url = f"{rocketman_redis_server.url}?namespace=offline-{uuid.uuid4().hex[:8]}"
    used = subprocess.run([str(venv / "bin" / "python"), "-c", textwrap.dedent(f"""
        import rocketman_core as rocketman
        seen = []
        rocketman.on_event("offline.ping", name="offline.pong")(seen.append)
        rocketman.configure(storage={url!r}, worker_count=1, latency=0.2)
        rocketman.emit("offline.ping", {{"from": "a wheel"}})
        assert rocketman.drain(timeout=10) and seen == [{{"from": "a wheel"}}], seen
        rocketman.shutdown(timeout=5)
        print("ok", rocketman.__file__)
    """)], capture_output=True, text=True, timeout=60, env=environment, cwd=tmp_path)
    assert used.returncode == 0, used.stderr
    assert str(venv) in used.stdout, "the installed wheel ran, not the clone"
