"""Test support for rocketman and for authors of its plugins.

* :class:`ServerProcess`: a real server process (any binary) on a free port,
  for tests, to stop, kill, freeze and restart; :class:`ServerMissing` when
  its binary is not installed. (A ``redis-server`` is
  ``rocketman_relay_redis.testing.RedisServer``: the core names no backend.)
* :func:`wait_until`: poll a condition until a deadline, never a bare sleep.
* :class:`EmitRecorder`: an ``emit`` for relays under test, which records
  ``(name, payload)`` and waits for N calls.
* The conformance kits, written once and run by every backend, ours and third
  parties', by subclassing one class in a test module and providing a fixture:
  :class:`StorageContract` (fixture ``storage``), :class:`ExecutorContract`
  (fixture ``executor``) and :class:`RelayContract` (fixtures ``relay`` and
  ``publish``). Their names do not start with ``Test``, so pytest collects
  only the subclasses::

      from rocketman_core.testing import StorageContract

      class TestMyStorage(StorageContract):
          @pytest.fixture
          def storage(self):
              storage = MyStorage()
              yield storage
              storage.close()

* :class:`DurableStorageContract` (fixture ``durable_storage_spec``, a
  :class:`DurableStorageSpec`): the opt-in kit of a storage with ``durable =
  True``: leases, renew, release, interrupt, retries, and a process holding
  messages killed with SIGKILL.
* :class:`RelayRestartContract` (fixtures ``restart_server`` and
  ``stop_server`` besides :class:`RelayContract`'s): the opt-in kit of a relay
  whose tests can stop and restart its server; subclass it instead of
  :class:`RelayContract`.

The kits need pytest; they are imported only when asked for, so that
the helpers above work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._deadlines import wait_until
from ._recording import EmitRecorder
from ._server_process import ServerMissing, ServerProcess, free_port

if TYPE_CHECKING:
    from ._durable_contract import DurableStorageContract, DurableStorageSpec
    from ._executor_contract import ExecutorContract
    from ._relay_contract import RelayContract, RelayRestartContract
    from ._storage_contract import StorageContract

__all__ = [
    "DurableStorageContract",
    "DurableStorageSpec",
    "EmitRecorder",
    "ExecutorContract",
    "RelayContract",
    "RelayRestartContract",
    "ServerMissing",
    "ServerProcess",
    "StorageContract",
    "free_port",
    "wait_until",
]

_KITS = {
    "StorageContract": "_storage_contract",
    "ExecutorContract": "_executor_contract",
    "RelayContract": "_relay_contract",
    "RelayRestartContract": "_relay_contract",
    "DurableStorageContract": "_durable_contract",
    "DurableStorageSpec": "_durable_contract",
}


def __getattr__(name: str) -> Any:
    module_name = _KITS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    import pytest

    qualified = f"{__name__}.{module_name}"
    # The kits' asserts are their failure messages: have pytest rewrite them
    # (an editable install hides the package from pytest's own plugin scan).
    pytest.register_assert_rewrite(qualified, f"{__name__}._deadlines",
                                   f"{__name__}._routing_contract", f"{__name__}._durable_contract")
    return getattr(importlib.import_module(qualified), name)
