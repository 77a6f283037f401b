"""Health checks behind ``segstream doctor``: broker, Redis, topics, the models root and the active bundle.

Every check returns a :class:`CheckResult` (name, ok, a one-line detail and a one-line fix hint) and never
raises. The service checks (broker, Redis) run concurrently, each in a daemon thread under a hard deadline,
so a dead or silent service costs a few seconds, never a hang. The bundle is verified and loaded exactly as
the worker loads it (:func:`segstream.streams.bundle_watch.load_active`: checksums, feature hash, signature
when a key is configured or one is required).

No click here: the command in ``segstream.cli.doctor`` only formats the results and picks the exit code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from segstream.redis_clients import is_cluster_url, sync_client
from segstream.settings import KafkaSettings, ModelSettings, RedisSettings, Settings, TopicSettings, redact_url

__all__ = [
    "BUNDLE_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "CheckResult",
    "check_broker",
    "check_bundle",
    "check_model_root",
    "check_redis",
    "check_topics",
    "run_checks",
]

DEFAULT_TIMEOUT_S = 3.0
# Verifying a bundle hashes every artifact and unpickles the serving models (imports scikit-learn): local
# work, but slower than a ping. It still gets a deadline, in case the models root is on a dead mount.
BUNDLE_TIMEOUT_S = 30.0

_BROKER_FIX = "start it with `segstream stack up` or check SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS"
_REDIS_FIX = "start it with `segstream stack up` or check SEGSTREAM_REDIS_URL"
_TOPICS_FIX = (
    "create them with `segstream topics create` (`segstream stack up` does too; Tansu forgets topics on restart)"
)

T = TypeVar("T")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: Short check name (``broker``, ``redis``, ``topics``, ``model-root``, ``bundle``).
        ok: Whether the thing checked answers / is in order.
        detail: One line saying what was found (no secrets).
        fix: One line saying how to fix it (empty when ``ok``).
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"name", "ok", "detail", "fix"}``."""
        return asdict(self)


class _Deadline(Exception):
    """A check did not finish in time."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _within(timeout: float, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a daemon thread and return its result, or raise :class:`_Deadline` after ``timeout`` s.

    A daemon thread, so a call stuck in a socket neither blocks this function nor the interpreter's exit.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name="segstream-doctor-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _Deadline(f"no answer within {timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- broker and topics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BrokerView:
    topics: frozenset[str]
    unready: dict[str, str]  # wanted topic -> why it is not ready (error code / partitions without leader)


def _broker_view(kafka: KafkaSettings, wanted: list[str], timeout: float) -> _BrokerView:
    from kafka import KafkaAdminClient

    kwargs = kafka.kafka_python_kwargs()
    kwargs["request_timeout_ms"] = int(timeout * 1000)
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
        kwargs["bootstrap_timeout_ms"] = int(timeout * 1000)
    admin = KafkaAdminClient(**kwargs)
    try:
        present = frozenset(admin.list_topics())
        unready: dict[str, str] = {}
        described = [name for name in wanted if name in present]
        if described:
            for desc in admin.describe_topics(described):
                parts = desc.get("partitions") or []
                if desc.get("error_code", 0) != 0:
                    unready[desc["name"]] = f"error code {desc['error_code']}"
                elif not parts:
                    unready[desc["name"]] = "no partitions"
                elif any(p.get("leader_id", -1) < 0 for p in parts):
                    unready[desc["name"]] = "partitions without a leader"
        return _BrokerView(present, unready)
    finally:
        admin.close()


def _first_host_port(bootstrap: list[str]) -> tuple[str, int] | None:
    if not bootstrap:
        return None
    host, _, port = bootstrap[0].rpartition(":")
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        return None


def _broker_failure(kafka: KafkaSettings, exc: BaseException) -> str:
    where = kafka.bootstrap_servers
    if isinstance(exc, _Deadline):
        return f"timed out at {where} ({exc})"
    import kafka.errors as kerr

    # kafka-python < 3 raises NoBrokersAvailable for an unreachable bootstrap list, >= 3 KafkaTimeoutError.
    unreachable = tuple(
        getattr(kerr, name)
        for name in ("NoBrokersAvailable", "KafkaTimeoutError", "KafkaConnectionError")
        if hasattr(kerr, name)
    )
    if isinstance(exc, unreachable):
        from segstream.embedded.probes import port_accepts

        target = _first_host_port(kafka.bootstrap_list())
        if target is not None and not port_accepts(*target, timeout=0.5):
            return f"connection refused at {where}"
        return f"the port is open at {where} but no Kafka broker answered"
    return f"cannot talk to Kafka at {where}: {type(exc).__name__}: {_one_line(exc)}"


def check_broker(kafka: KafkaSettings, view: _BrokerView | BaseException) -> CheckResult:
    """The broker check from what listing the topics gave (a view, or the exception it raised)."""
    if not kafka.bootstrap_list():
        return CheckResult("broker", False, "no bootstrap servers configured", "set SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS")
    if isinstance(view, BaseException):
        return CheckResult("broker", False, _broker_failure(kafka, view), _BROKER_FIX)
    return CheckResult("broker", True, f"{kafka.bootstrap_servers}, {len(view.topics)} topics")


def check_topics(topics: TopicSettings, view: _BrokerView | BaseException) -> CheckResult:
    """Every topic the worker reads or writes exists and has a leader for each partition."""
    wanted = list(dict.fromkeys(topics.names()))
    if isinstance(view, BaseException):
        return CheckResult(
            "topics", False, f"not checked: the broker did not answer ({len(wanted)} topics expected)",
            "fix the broker first, then run `segstream topics create`",
        )  # fmt: skip
    missing = [name for name in wanted if name not in view.topics]
    problems = [f"missing: {', '.join(missing)}"] if missing else []
    problems += [f"{name}: {why}" for name, why in view.unready.items()]
    if problems:
        return CheckResult("topics", False, "; ".join(problems), _TOPICS_FIX)
    return CheckResult("topics", True, f"all {len(wanted)} present: {', '.join(wanted)}")


# --- Redis ------------------------------------------------------------------------------------------------


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "**********")
    return text


def _redis_ping(redis_settings: RedisSettings, timeout: float) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs = redis_settings.client_kwargs()
    kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0)
    if is_cluster_url(redis_settings.url):
        client = sync_client(redis_settings.url, **kwargs)
    else:
        client = redis.Redis.from_url(redis_settings.url, retry=Retry(NoBackoff(), 0), **kwargs)
    try:
        client.ping()
    finally:
        client.close()


def _redis_failure(exc: BaseException, where: str) -> tuple[str, str]:
    import redis.exceptions as rex

    if isinstance(exc, _Deadline) or isinstance(exc, rex.TimeoutError):
        return f"timeout at {where}: no answer within the deadline", _REDIS_FIX
    if isinstance(exc, rex.AuthenticationError | rex.AuthenticationWrongNumberOfArgsError | rex.NoPermissionError):
        return (
            f"authentication failed at {where} ({_one_line(exc)})",
            "check SEGSTREAM_REDIS_PASSWORD (or the password in SEGSTREAM_REDIS_URL)",
        )
    if isinstance(exc, rex.ConnectionError):
        causes = [exc, exc.__cause__, exc.__context__]
        if any(isinstance(c, ConnectionRefusedError) for c in causes) or "refused" in str(exc).lower():
            return f"connection refused at {where}", _REDIS_FIX
        return f"cannot connect to {where} ({_one_line(exc)})", _REDIS_FIX
    if isinstance(exc, ValueError):  # from_url: unknown scheme or a malformed URL
        return (
            f"bad SEGSTREAM_REDIS_URL {where}: {_one_line(exc)}",
            "use a redis://, rediss://, unix:// or redis+cluster:// URL in SEGSTREAM_REDIS_URL",
        )
    return f"error at {where}: {type(exc).__name__}: {_one_line(exc)}", _REDIS_FIX


def check_redis(redis_settings: RedisSettings, timeout: float = DEFAULT_TIMEOUT_S) -> CheckResult:
    """PING the configured Redis; tells connection refused, auth failure and timeout apart. No password shown."""
    url = redis_settings.url
    where = redact_url(url)
    secrets = [redis_settings.password.get_secret_value() if redis_settings.password else ""]
    try:
        from urllib.parse import unquote, urlsplit

        url_password = urlsplit(url).password
        if url_password:
            secrets += [url_password, unquote(url_password)]
    except ValueError:
        pass
    if url.startswith("memory://"):
        return CheckResult("redis", True, "memory:// (in-process state, nothing to reach)")
    try:
        _within(timeout + 1.0, lambda: _redis_ping(redis_settings, timeout))
    except Exception as exc:
        detail, fix = _redis_failure(exc, where)
        return CheckResult("redis", False, _scrub(detail, secrets), fix)
    return CheckResult("redis", True, f"{where} answers PING")


# --- models root and bundle -------------------------------------------------------------------------------


def _no_model_fix(root: Path) -> str:
    from segstream.streams.bundle_watch import no_model_hint

    return no_model_hint(root)


def check_model_root(models: ModelSettings) -> CheckResult:
    """SEGSTREAM_MODEL_ROOT exists and holds a ``current`` pointer to a directory."""
    from segstream.models.bundle import CURRENT_NAME

    root = Path(models.root).absolute()
    pointer = root / CURRENT_NAME
    if not root.exists():
        return CheckResult("model-root", False, f"{root} does not exist", _no_model_fix(root))
    if not root.is_dir():
        return CheckResult(
            "model-root", False, f"{root} is not a directory", "point SEGSTREAM_MODEL_ROOT at a directory"
        )
    if not pointer.is_symlink() and not pointer.exists():
        return CheckResult("model-root", False, f"{root} has no `{CURRENT_NAME}` pointer", _no_model_fix(root))
    target = pointer.resolve()
    if not target.is_dir():
        return CheckResult(
            "model-root", False, f"{pointer} points to {target}, which is not a directory",
            "promote a bundle again with `segstream promote DIR`",
        )  # fmt: skip
    return CheckResult("model-root", True, f"{root}, {CURRENT_NAME} -> {target.name}")


def _bundle_fix(message: str, root: Path) -> str:
    lowered = message.lower()
    if "signature is required but no signing key" in lowered:
        return "set SEGSTREAM_MODEL_SIGNING_KEY to the key the bundle was signed with"
    if "signature" in lowered or "not signed" in lowered:
        return (
            "set SEGSTREAM_MODEL_SIGNING_KEY to the key the bundle was signed with, or promote a bundle signed with it"
        )
    if "feature" in lowered:
        return f"re-train with this version of segstream (`segstream train --out {root}/NAME --promote`)"
    return (
        "promote an intact bundle with `segstream promote DIR` "
        f"or re-train (`segstream train --out {root}/NAME --promote`)"
    )


def check_bundle(models: ModelSettings, root_ok: bool = True, timeout: float = BUNDLE_TIMEOUT_S) -> CheckResult:
    """The ``current`` bundle verifies and loads exactly as the worker loads it; the detail names its version."""
    from segstream.models.bundle import read_manifest, resolve_current
    from segstream.models.errors import BundleError
    from segstream.streams.bundle_watch import load_active

    root = Path(models.root).absolute()
    if not root_ok:
        return CheckResult("bundle", False, "not checked: no current bundle under the models root", _no_model_fix(root))
    key = models.signing_key.get_secret_value().encode() if models.signing_key else None
    version = "?"
    try:
        path = resolve_current(root)
        try:
            version = read_manifest(path).version
        except BundleError:
            pass  # load_active reports it
        model = _within(timeout, lambda: load_active(path, signing_key=key, require_signature=models.require_signature))
    except _Deadline as exc:
        return CheckResult(
            "bundle", False, f"version {version}: verifying took too long ({exc})", _bundle_fix("", root)
        )
    except BundleError as exc:
        message = _one_line(exc)
        return CheckResult("bundle", False, f"version {version} refused: {message}", _bundle_fix(message, root))
    except Exception as exc:  # the worker would refuse anything load_active raises; so do we, without a traceback
        message = f"{type(exc).__name__}: {_one_line(exc)}"
        return CheckResult("bundle", False, f"version {version} refused: {message}", _bundle_fix(message, root))
    signed = "signature checked" if key else "unsigned (no signing key configured)"
    return CheckResult("bundle", True, f"version {model.version} verifies and loads, {signed}")


# --- all of them ------------------------------------------------------------------------------------------


def run_checks(settings: Settings, timeout: float = DEFAULT_TIMEOUT_S) -> list[CheckResult]:
    """Run every check (services concurrently) and return the results: broker, redis, topics, model-root, bundle.

    Args:
        settings: The process settings (``Settings.load()``).
        timeout: Seconds each service gets to answer.
    """
    wanted = list(dict.fromkeys(settings.topics.names()))
    results: dict[str, Any] = {}

    def broker_job() -> None:
        try:
            results["view"] = _within(timeout + 1.0, lambda: _broker_view(settings.kafka, wanted, timeout))
        except BaseException as exc:
            results["view"] = exc

    def redis_job() -> None:
        results["redis"] = check_redis(settings.redis, timeout)

    jobs = [threading.Thread(target=job, daemon=True) for job in (broker_job, redis_job)]
    for job in jobs:
        job.start()
    root = check_model_root(settings.models)
    bundle = check_bundle(settings.models, root_ok=root.ok)
    for job in jobs:
        job.join(timeout + 5.0)  # each job has its own deadline; this only guards against the impossible
    view = results.get("view", _Deadline(f"no answer within {timeout:g}s"))
    redis_result = results.get("redis") or CheckResult("redis", False, "timeout: no answer", _REDIS_FIX)
    return [
        check_broker(settings.kafka, view),
        redis_result,
        check_topics(settings.topics, view),
        root,
        bundle,
    ]
