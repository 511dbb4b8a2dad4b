"""Plugin discovery and backend selection.

Plugins are modules named by entry points in the group ``rocketman``. They are
loaded lazily and once, each in isolation: one that fails to import is
recorded with its error and the others load. A failed plugin is an error only
when the configuration selects what it would have provided.

Entry points are read by :mod:`rocketman_core._entry_points`, which reads
the ``entry_points.txt`` files that ``importlib.metadata`` reads, without
importing it: discovery runs in every process that emits, and that import
alone costs more than pluggy's.
"""

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import pluggy

from . import _entry_points, _hookspecs
from ._errors import ConfigurationError, PluginError, UnknownBackendError
from ._urls import mask_url, url_query

__all__ = ["Backend", "PluginInfo", "Plugins", "KINDS"]

logger = logging.getLogger("rocketman.plugins")

ENTRY_POINT_GROUP = "rocketman"
DISABLE_ENV = "ROCKETMAN_DISABLE_PLUGINS"

#: kind -> the registration hook that provides it.
KINDS = {
    "storage": "register_storages",
    "executor": "register_executors",
    "relay": "register_relays",
}


class PluginInfo:
    """What is known of one plugin: where it came from and what it provides.

    A plain class rather than a dataclass: the dataclasses module and the
    class generation cost milliseconds at import, in every process.
    """

    __slots__ = ("disabled", "distribution", "error", "module", "name", "provides", "schemes", "version")

    def __init__(
        self,
        name: str,
        module: str,
        distribution: str | None = None,
        version: str | None = None,
        error: str | None = None,
        disabled: bool = False,
    ) -> None:
        self.name = name
        self.module = module
        self.distribution = distribution
        self.version = version
        self.error = error
        self.disabled = disabled
        self.provides: dict[str, list[str]] = {}
        #: kind -> backend name -> the URL schemes that select it (its name first).
        self.schemes: dict[str, dict[str, list[str]]] = {}

    def __repr__(self) -> str:
        return f"<plugin {self.name} ({self.origin}){' error' if self.error else ''}>"

    @property
    def origin(self) -> str:
        """The distribution and version, for messages: ``rocketman-memory 0.1.0``."""
        if self.distribution is None:
            return "registered in code"
        return f"{self.distribution} {self.version}"


class Backend(NamedTuple):
    """A backend a plugin registered: its factory and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo
    schemes: tuple[str, ...] = ()
    raw_url: bool = False


class Plugins:
    """The plugins of one rocketman runtime, and the backends they provide."""

    def __init__(self, *, entry_points: bool = True) -> None:
        self._use_entry_points = entry_points
        self._lock = threading.RLock()
        self._loaded = False
        self.manager = pluggy.PluginManager("rocketman")
        self.manager.add_hookspecs(_hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.backends: dict[str, dict[str, Backend]] = {kind: {} for kind in KINDS}
        self.conflicts: dict[tuple[str, str], list[Backend]] = {}
        self._pending: list[tuple[object, PluginInfo]] = []

    # -- loading ---------------------------------------------------------

    def load(self) -> None:
        """Discover and load the plugins, once. Thread-safe."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            from . import _builtin

            # pluggy's own block list: a disabled name is neither imported
            # (entry points) nor registered (in code).
            for name in os.environ.get(DISABLE_ENV, "").split(","):
                if name.strip():
                    self.manager.set_blocked(name.strip())
            self._add(_builtin, PluginInfo("rocketman-core", _builtin.__name__,
                                           "rocketman-core", _core_version()))
            if self._use_entry_points:
                self._load_entry_points()
            for plugin, info in self._pending:
                self._add(plugin, info)
            self._pending.clear()
            self._loaded = True

    def register(self, plugin: object, name: str | None = None) -> PluginInfo:
        """Register a plugin object (a module or an instance) in code."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name, getattr(plugin, "__name__", type(plugin).__qualname__))
        with self._lock:
            if name in self.infos:
                raise PluginError(f"a plugin named {name!r} is already registered")
            if self._loaded:
                self._add(plugin, info)
            else:
                self._pending.append((plugin, info))
        return info

    def _load_entry_points(self) -> None:
        for entry_point in _entry_points.entry_points(ENTRY_POINT_GROUP):
            info = PluginInfo(
                entry_point.name,
                entry_point.value,
                entry_point.distribution,
                entry_point.version,
            )
            if entry_point.name in self.infos:
                first = self.infos[entry_point.name]
                info.error = (
                    f"the entry point name {entry_point.name!r} is already used by "
                    f"{first.origin}; this one is skipped. Entry point names must be "
                    "unique: uninstall one of them or rename its entry point."
                )
                logger.warning("plugin %s (%s): %s", info.name, info.origin, info.error)
                self.infos[f"{entry_point.name} ({info.distribution})"] = info
                continue
            if self.manager.is_blocked(entry_point.name):
                info.disabled = True
                self.infos[info.name] = info
                logger.debug("plugin %s disabled by %s", info.name, DISABLE_ENV)
                continue
            try:
                plugin = _entry_points.load(entry_point.value)
            except Exception as error:  # any failure of a third party's import
                info.error = _describe(error)
                self.infos[info.name] = info
                logger.warning(
                    "plugin %s (%s) failed to load and is left out: %s",
                    info.name, info.origin, info.error,
                )
                continue
            self._add(plugin, info)

    def _add(self, plugin: object, info: PluginInfo) -> None:
        self.infos[info.name] = info
        try:
            registered = self.manager.register(plugin, name=info.name)
            if registered is None:  # blocked
                info.disabled = True
                logger.debug("plugin %s disabled by %s", info.name, DISABLE_ENV)
                return
            self.manager.check_pending()  # a hook implementation no hook specifies
        except Exception as error:  # pluggy rejects bad hook implementations
            info.error = self._rejection(plugin, error)
            if self.manager.is_registered(plugin):
                self.manager.unregister(plugin)
            logger.warning("plugin %s (%s) was rejected: %s", info.name, info.origin, info.error)
            return
        for kind, hook_name in KINDS.items():
            for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                if impl.plugin_name != info.name:
                    continue
                register = self._registrar(kind, info)
                try:
                    impl.function(*[register for _ in impl.argnames])
                except Exception as error:
                    info.error = _describe(error)
                    logger.warning(
                        "plugin %s (%s) failed in %s: %s",
                        info.name, info.origin, hook_name, info.error,
                    )

    def _rejection(self, plugin: object, error: Exception) -> str:
        """Why pluggy refused ``plugin``; for a hook no spec names, the nearest that does."""
        if not isinstance(error, pluggy.PluginValidationError) or not self.manager.is_registered(plugin):
            return _describe(error)
        import difflib

        known = [name for name in vars(self.manager.hook)
                 if not name.startswith("_") and getattr(self.manager.hook, name).has_spec()]
        unknown = [caller.name for caller in self.manager.get_hookcallers(plugin) or ()
                   if not caller.has_spec()]
        reasons = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            reasons.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return (f"it implements hooks rocketman does not have: {', '.join(reasons)}. Hooks are "
                f"found by name; rocketman's are {', '.join(sorted(known))}")

    def _registrar(self, kind: str, info: PluginInfo) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any], *,
                     schemes: Iterable[str] = (), raw_url: bool = False) -> None:
            backend = Backend(kind, name, factory, info, tuple(schemes), bool(raw_url))
            info.provides.setdefault(kind, []).append(name)
            info.schemes.setdefault(kind, {})[name] = [name, *(s for s in backend.schemes if s != name)]
            for key in (name, *backend.schemes):
                existing = self.backends[kind].get(key)
                if existing is not None and existing.plugin is not info:
                    self.conflicts.setdefault((kind, key), [existing]).append(backend)
                    logger.warning(
                        "two plugins provide the %s %r: %s (%s) and %s (%s); "
                        "selecting it is an error until one is disabled with %s",
                        kind, key, existing.plugin.name, existing.plugin.origin,
                        info.name, info.origin, DISABLE_ENV,
                    )
                    continue
                self.backends[kind][key] = backend

        return register

    # -- selection -------------------------------------------------------

    def backend(self, kind: str, name: str) -> Backend:
        """The backend of ``kind`` named (or URL scheme) ``name``, or a helpful error."""
        self.load()
        conflict = self.conflicts.get((kind, name))
        if conflict:
            origins = " and ".join(f"{b.plugin.name} ({b.plugin.origin})" for b in conflict)
            raise PluginError(
                f"the {kind} {name!r} is provided by {origins}; disable one with "
                f"{DISABLE_ENV}=<plugin name>"
            )
        found = self.backends[kind].get(name)
        if found is not None:
            return found
        failed = self.infos.get(name)
        if failed is not None and failed.error:
            raise PluginError(
                f"the {kind} {name!r} cannot be used: plugin {failed.name!r} "
                f"({failed.origin}) failed to load: {failed.error}"
            )
        if failed is not None and failed.disabled:
            raise PluginError(
                f"the {kind} {name!r} cannot be used: plugin {name!r} is disabled "
                f"by {DISABLE_ENV}"
            )
        raise UnknownBackendError(self._unknown_message(kind, name))

    def _unknown_message(self, kind: str, name: str) -> str:
        known = {b.name: b for b in self.backends[kind].values()}
        listing = ", ".join(
            f"{b.name} ({'from ' if b.plugin.distribution else ''}{b.plugin.origin})" for b in sorted(known.values(), key=lambda b: b.name)
        ) or "none"
        message = f"no {kind} named {name!r}. Installed {kind}s: {listing}."
        import difflib

        close = difflib.get_close_matches(name, list(self.backends[kind]), n=1, cutoff=0.6)
        if close:
            message += f" Did you mean {self.backends[kind][close[0]].name!r}?"
        broken = [i for i in self.infos.values() if i.error]
        if broken:
            message += " Plugins that failed to load: " + "; ".join(
                f"{i.name} ({i.origin}): {i.error.splitlines()[0]}" for i in broken if i.error
            ) + " (see `rocketman plugins`)."
        return message

    def build(self, kind: str, spec: str, options: dict[str, Any] | None = None) -> Any:
        """Build the backend ``spec`` selects: a name, or a URL whose scheme is the name.

        A URL's query becomes options (values as written, strings), the rest
        of it ``url=``; a backend registered with ``raw_url=True`` gets the
        URL as written instead, query and all, and decides.
        """
        options = dict(options or {})
        name = spec.split("://", 1)[0] if "://" in spec else spec
        backend = self.backend(kind, name.lower())
        if "://" in spec:
            if backend.raw_url:
                options["url"] = spec
            else:
                url, query = url_query(spec)
                options = {**query, **options, "url": url}
        try:
            return backend.factory(**options)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(
                f"the {kind} {mask_url(spec)!r} (from {backend.plugin.origin}) "
                f"rejected its options: {mask_url(str(error))}"
            ) from error


def _describe(error: BaseException) -> str:
    import traceback

    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    return mask_url(text)


def _core_version() -> str:
    from . import __version__

    return __version__
