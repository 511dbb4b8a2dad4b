"""The pytest plugin: each test gets a fresh, isolated runtime that records emits."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_rocketman_app_is_isolated_and_records_what_was_emitted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import rocketman_core as rocketman

        def test_first(rocketman_app):
            received = []

            @rocketman.on_event("user.signed_up")
            def welcome(payload):
                received.append(payload)

            rocketman.emit("user.signed_up", {"id": 1})
            # inline: the consumer ran before emit returned
            assert received == [{"id": 1}]
            assert rocketman_app.emitted_names() == ["user.signed_up"]
            assert rocketman_app.payloads("user.signed_up") == [{"id": 1}]

        def test_second_sees_nothing_of_the_first(rocketman_app):
            assert rocketman_app.consumers.all() == []
            assert rocketman_app.emitted == []
            rocketman.emit("other")
            assert rocketman_app.emitted_names() == ["other"]

        def test_consumer_errors_reach_the_test(rocketman_app):
            @rocketman.on_event("boom")
            def fails(payload):
                raise KeyError("missing")

            with pytest.raises(KeyError):
                rocketman.emit("boom")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


ASYNC_TESTS = """
import asyncio
import pytest
import rocketman_core as rocketman

@rocketman.on_event("order.placed")
async def receipt(payload):
    await asyncio.sleep(0)
    RECEIPTS.append(payload["id"])

RECEIPTS = []

{mark}
async def test_emit_async_awaits_the_async_consumers(rocketman_app):
    await rocketman.emit_async("order.placed", {{"id": 1}})
    assert RECEIPTS[-1] == 1  # inline: awaited before emit_async returned
    await rocketman.emit_many_async([("order.placed", {{"id": 2}}), ("order.placed", {{"id": 3}})])
    assert RECEIPTS[-2:] == [2, 3]
    assert rocketman_app.payloads("order.placed") == [{{"id": 1}}, {{"id": 2}}, {{"id": 3}}]
    assert await rocketman.drain_async() is True

{mark}
async def test_a_sync_emit_in_the_test_loop_says_to_use_emit_async(rocketman_app):
    with pytest.raises(RuntimeError, match="emit_async"):
        rocketman.emit("order.placed", {{"id": 4}})
    assert 4 not in RECEIPTS
"""


@pytest.mark.parametrize(("plugin", "mark"), [
    ("asyncio", "@pytest.mark.asyncio"),
    ("anyio", "@pytest.mark.anyio"),
])
def test_rocketman_app_works_in_async_tests(pytester: pytest.Pytester, plugin: str, mark: str) -> None:
    pytester.makepyfile(ASYNC_TESTS.format(mark=mark))
    if plugin == "anyio":
        # anyio runs each test on asyncio by default, and on trio when asked: asyncio only here.
        pytester.makeconftest(
            "import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", plugin,
                                           "-W", "error::RuntimeWarning")
    result.assert_outcomes(passed=2)
