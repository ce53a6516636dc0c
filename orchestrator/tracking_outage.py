"""Riding out an unreachable MLflow tracking server: the settings, what counts as an outage, the
backoff between attempts, and a bounded wait for the calls that cannot be deferred.

* :class:`OutagePolicy` holds the settings (defaults, ``POSELAB_MLFLOW_*`` environment variables) and
  bounds MLflow's own HTTP client, which by default retries a dead server for minutes per call.
* :func:`is_unreachable` tells an outage (connection refused or reset, timeout, 5xx/429 after the
  HTTP client's retries) from a request the server refused (a bad parameter: a bug, raised as before).
* :class:`Backoff` spaces the attempts of one logger (doubling pauses up to a cap, never a busy loop)
  and writes one warning when the server becomes unreachable and one when it is back.
* :func:`wait_for` retries one call with the same backoff for at most ``wait_s``: the ablation
  driver's parent run and table, which need answers from the server, not a spool.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

WAIT_ENV = "POSELAB_MLFLOW_WAIT_S"
RETRY_ENV = "POSELAB_MLFLOW_RETRY_S"
MAX_RETRY_ENV = "POSELAB_MLFLOW_MAX_RETRY_S"
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_HTTP_ENV_SET_HERE: dict[str, str] = {}  # MLflow HTTP variables this module set (others are the user's)


@dataclass(frozen=True)
class OutagePolicy:
    """How a run rides out an unreachable tracking server.

    Attributes:
        wait_s: how long the end of a run (and an ablation driver's calls that need an answer) waits
            for the server before giving up with an error naming what was not logged (default 600 s,
            ``$POSELAB_MLFLOW_WAIT_S``). While training, a run never gives up: it keeps spooling.
        retry_s: the first pause between delivery attempts during an outage; doubled after every
            failed attempt (``$POSELAB_MLFLOW_RETRY_S``, default 2 s).
        max_retry_s: the longest pause (``$POSELAB_MLFLOW_MAX_RETRY_S``, default 30 s): records are
            delivered at most this long after the server is back (at the next logging call).
        probe_timeout_s: an attempt during an outage first asks ``/health`` with this timeout, so a
            server that is still away costs a training step at most this long.
        http_timeout_s, http_max_retries: MLflow's HTTP client limits (``MLFLOW_HTTP_REQUEST_TIMEOUT``,
            ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``; MLflow's defaults, 120 s and 7 retries with backoff,
            stall a call for minutes), applied unless the user set those variables.
    """

    wait_s: float = 600.0
    retry_s: float = 2.0
    max_retry_s: float = 30.0
    probe_timeout_s: float = 5.0
    http_timeout_s: int = 15
    http_max_retries: int = 2

    def __post_init__(self) -> None:
        if self.wait_s < 0 or not 0 < self.retry_s <= self.max_retry_s or self.probe_timeout_s <= 0:
            raise ValueError(f"invalid outage policy {self}: need wait_s >= 0, 0 < retry_s <= max_retry_s, "
                             "probe_timeout_s > 0")
        if self.http_timeout_s < 1 or self.http_max_retries < 0:
            raise ValueError(f"invalid outage policy {self}: need http_timeout_s >= 1, http_max_retries >= 0")

    @classmethod
    def from_env(cls) -> OutagePolicy:
        """The defaults, with ``$POSELAB_MLFLOW_WAIT_S``, ``..._RETRY_S``, ``..._MAX_RETRY_S`` applied."""
        values: dict[str, float] = {}
        for name, env in (("wait_s", WAIT_ENV), ("retry_s", RETRY_ENV), ("max_retry_s", MAX_RETRY_ENV)):
            text = os.environ.get(env, "").strip()
            if text:
                try:
                    values[name] = float(text)
                except ValueError:
                    raise ValueError(f"${env}={text!r} is not a number of seconds") from None
        if "retry_s" in values and "max_retry_s" not in values:
            values["max_retry_s"] = max(values["retry_s"], cls.max_retry_s)
        return cls(**values)

    def bound_http_client(self) -> None:
        """Set MLflow's HTTP timeout and retries (read at every request) to this policy's, in this
        process, unless the user set them; the backoff between the client's own retries is 1 s, 2 s."""
        wanted = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.http_timeout_s),
                  "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.http_max_retries),
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5"}
        for name, value in wanted.items():
            if name not in os.environ or os.environ[name] == _HTTP_ENV_SET_HERE.get(name):
                os.environ[name] = _HTTP_ENV_SET_HERE[name] = value


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) means the server could not be reached or
    could not answer: a connection error or timeout, or a 5xx/429 status after the client's retries."""
    import requests

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                          requests.exceptions.RetryError, ConnectionError, TimeoutError)):
            return True
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in _TRANSIENT_STATUS:
            return True
        e = e.__cause__ or e.__context__
    return False


def server_answers(tracking_uri: str, timeout_s: float) -> bool:
    """Whether an ``http(s)://`` tracking server answers at all (any HTTP status but 5xx/429: an auth
    proxy's 401 is an answer; so is a TLS handshake this probe cannot verify, MLflow's client may use
    another CA bundle); other stores (SQLite) always count as answering."""
    if not tracking_uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s):
            return True
    except urllib.error.HTTPError as e:
        return e.code not in _TRANSIENT_STATUS
    except urllib.error.URLError as e:
        return isinstance(e.reason, ssl.SSLError)
    except ssl.SSLError:
        return True
    except (OSError, ValueError):
        return False


class Backoff:
    """When the next attempt to reach the server may be made, and the two warnings of an outage.

    Args:
        policy: the pauses.
        what: how the warnings name the writer ("run trial-1 (MLflow run abc)").
        clock: seconds, monotonic (tests may pass their own).
    """

    def __init__(self, policy: OutagePolicy, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self.what, self.clock = policy, what, clock
        self.down_since: float | None = None
        self.pause = policy.retry_s
        self.next_attempt = 0.0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def due(self) -> bool:
        """Whether an attempt may be made now."""
        return self.clock() >= self.next_attempt

    def failed(self, tracking_uri: str, error: BaseException, where: str) -> None:
        """An attempt failed: warn once per outage, and push the next attempt back (pauses double)."""
        now = self.clock()
        if self.down_since is None:
            self.down_since = now
            self.pause = self.policy.retry_s
            log.warning("MLflow tracking server %s unreachable (%s): the records of %s wait in %s and are "
                        "delivered when it is back (training goes on)", tracking_uri, _brief(error),
                        self.what, where)
        else:
            self.pause = min(self.pause * 2, self.policy.max_retry_s)
        self.next_attempt = now + self.pause

    def recovered(self, tracking_uri: str, delivered: int, where: str) -> None:
        """An attempt succeeded: one line when it ends an outage this writer saw, or delivers records
        an earlier process kept."""
        if self.down_since is not None:
            log.warning("MLflow tracking server %s is back after %.0f s: delivered the %d records %s kept "
                        "in %s", tracking_uri, self.clock() - self.down_since, delivered, self.what, where)
        elif delivered:
            log.info("delivered %d MLflow records of %s kept in %s", delivered, self.what, where)
        self.down_since = None
        self.pause = self.policy.retry_s
        self.next_attempt = 0.0


def wait_for(call: Callable[[], T], tracking_uri: str, policy: OutagePolicy, what: str) -> T:
    """``call()``, retried with the policy's backoff while the server is unreachable, for at most
    ``policy.wait_s``; one warning when it starts failing and one when it answers again.

    Raises:
        TrackingUnavailable: the server did not answer within ``wait_s`` (from the last outage error).
        Any other error of ``call`` at once.
    """
    start = time.monotonic()
    backoff = Backoff(policy, what)
    while True:
        try:
            result = call()
        except Exception as e:
            if not is_unreachable(e):
                raise
            waited = time.monotonic() - start
            if waited >= policy.wait_s:
                raise TrackingUnavailable(
                    f"MLflow tracking server {tracking_uri} did not answer for {waited:.0f} s while {what} "
                    f"(waited up to {policy.wait_s:g} s, ${WAIT_ENV}): {_brief(e)}") from e
            if not backoff.down:
                backoff.down_since = time.monotonic()
                log.warning("MLflow tracking server %s unreachable while %s (%s): retrying for up to %g s",
                            tracking_uri, what, _brief(e), policy.wait_s)
            pause = backoff.pause
            backoff.pause = min(backoff.pause * 2, policy.max_retry_s)
            time.sleep(min(pause, max(0.0, policy.wait_s - waited)))
            continue
        if backoff.down:
            log.warning("MLflow tracking server %s is back after %.0f s (%s)", tracking_uri,
                        time.monotonic() - (backoff.down_since or start), what)
        return result


class TrackingUnavailable(RuntimeError):
    """The tracking server stayed unreachable longer than the policy's ``wait_s``."""


def _brief(error: BaseException) -> str:
    """The first line of an error, shortened (MLflow's connection errors are long)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
