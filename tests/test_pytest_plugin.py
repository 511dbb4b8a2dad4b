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
