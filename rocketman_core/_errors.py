"""The exceptions rocketman raises."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "PluginError",
    "RocketmanError",
    "UnknownBackendError",
]


class RocketmanError(Exception):
    """The base of every error rocketman raises on purpose."""


class ConfigurationError(RocketmanError, ValueError):
    """A setting has a bad value, or names something that cannot be built."""


class UnknownBackendError(ConfigurationError):
    """No installed plugin provides the backend the configuration names."""


class PluginError(ConfigurationError):
    """The plugin that provides the selected backend failed to load, or two do."""
