"""The MLflow store checked before any work, and tracking failures as one line.

:func:`check_store` runs at the start of a job (``lstm_exp.app.run_job``) and of a sweep
(``SweepCallback.on_multirun_start``), before any stage: an unreachable server, a corrupt or
read-only SQLite file, a ``file:`` store (MLflow 3 refuses file stores) or a database whose
driver is missing is a :class:`StoreError` whose one line names the URI and what to do, within
seconds (a probe with a :data:`PROBE_TIMEOUT_S` timeout; MLflow itself would retry for minutes).

:func:`short_http_retries` sets ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
/ ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` (unless the user set them), so that a server that dies
mid-sweep costs each call seconds, not the 4+ minutes of MLflow's defaults.  :func:`tracking_error`
turns whatever a failed tracking call raised into one :class:`TrackingError` line naming the URI;
:func:`store_calls` does it for a block of calls when the store no longer answers.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from lstm_exp.errors import LstmExpError

#: seconds the probe of a server or database waits for an answer
PROBE_TIMEOUT_S = 5
#: MLflow's HTTP settings while lstm_exp runs (a value the user exported wins)
HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
#: what to write instead of a store lstm_exp cannot use
STORE_HINT = "set tracking.tracking_uri= (or MLFLOW_TRACKING_URI) to a working store, or tracking=none"


class StoreError(LstmExpError):
    """The MLflow store cannot be used (found before any work)."""


class TrackingError(LstmExpError):
    """A tracking call failed after the job's work was done (its result is kept locally)."""


def short_http_retries() -> None:
    """MLflow's HTTP timeout and retries made short for this process and the jobs it starts."""
    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # a line per retry: the error says it


def check_store(uri: str) -> None:
    """Raise :class:`StoreError` unless the MLflow store at ``uri`` answers and can be written."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("", "file"):
        raise StoreError(f"tracking URI {uri!r} is a file store, which MLflow 3 refuses: use "
                         f"sqlite:///{Path(uri.removeprefix('file://')).resolve().parent / 'mlflow.db'} "
                         f"or an http:// server; {STORE_HINT}")
    if scheme in ("http", "https"):
        short_http_retries()
        _check_server(uri)
    elif scheme == "sqlite":
        _check_sqlite(uri)
    elif "+" in scheme or scheme in ("postgresql", "postgres", "mysql", "mssql"):
        _check_database(uri)


def _check_server(uri: str) -> None:
    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise StoreError(f"MLflow server {uri} answered HTTP {exc.code} ({exc.reason}) to a search of "
                         f"experiments: is it an MLflow tracking server? {STORE_HINT}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreError(f"no MLflow server answers at {uri} ({reason}): start it (mlflow server --host ... "
                         f"--port ...) or {STORE_HINT}") from None


def _check_sqlite(uri: str) -> None:
    from lstm_exp.tracking.store import sqlite_file

    db = sqlite_file(uri)
    if db is None:
        return
    folder = db.parent
    if not db.exists():
        if folder.exists() and not _writable(folder):
            raise StoreError(f"cannot create the MLflow store {uri}: folder {folder} is read-only; {STORE_HINT}")
        return
    reason = _sqlite_fault(db) or (None if _writable(folder) else f"in a read-only folder ({folder}: SQLite and "
                                                                     "lstm_exp's store lock write beside the file)")
    if reason:
        fix = (f"make {db} and {folder} writable for this user" if "read-only" in reason
               else f"move {db} aside (mv {db} {db}.bad) to start a new store")
        raise StoreError(f"MLflow store {uri} is {reason}: {fix}, or {STORE_HINT}")


def _writable(folder: Path) -> bool:
    probe = folder / f".lstm_exp-write-probe-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


def _sqlite_fault(db: Path) -> Optional[str]:
    """Why the SQLite file cannot be a store ("not a database", "read-only"), or None."""
    try:
        connection = sqlite3.connect(str(db), timeout=PROBE_TIMEOUT_S)
    except sqlite3.Error as exc:
        return f"unreadable ({exc})"
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(f"PRAGMA user_version = {int(version)}")  # a write (rolled back): fails when read-only
        connection.rollback()
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return f"read-only ({text}; its folder {db.parent} must be writable too)"
        if "locked" in text:
            return None  # another job is writing: MLflow waits for it
        return f"not usable ({text})"
    except sqlite3.DatabaseError as exc:
        return f"corrupt ({exc})"
    finally:
        connection.close()
    return None


def _check_database(uri: str) -> None:
    try:
        import sqlalchemy
    except ImportError:  # pragma: no cover - MLflow requires it
        return
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=_connect_timeout(uri), poolclass=sqlalchemy.pool.NullPool)
    except ImportError as exc:
        raise StoreError(f"no database driver for {_redacted(uri)} ({exc}): pip install 'lstm_exp[team]' "
                         f"(psycopg2-binary) and write postgresql+psycopg2://...; {STORE_HINT}") from None
    except Exception as exc:
        raise StoreError(f"tracking URI {_redacted(uri)} is not a database URL SQLAlchemy reads ({exc}); "
                         f"{STORE_HINT}") from None
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot connect to the MLflow database {_redacted(uri)} ({first}): start it or "
                         f"{STORE_HINT}") from None
    finally:
        engine.dispose()


def _connect_timeout(uri: str) -> dict:
    return {"connect_timeout": PROBE_TIMEOUT_S} if uri.startswith(("postgres", "mysql")) else {}


def _redacted(uri: str) -> str:
    """The URI without its password (a database URL's ``user:password@``)."""
    if "@" not in uri or "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else uri


def tracking_error(uri: str, exc: BaseException) -> TrackingError:
    """One line for a tracking call that failed: the URI and the first line of the cause."""
    text = str(exc).strip()
    first = text.splitlines()[0][:300] if text else type(exc).__name__
    return TrackingError(f"the MLflow store {_redacted(uri)} failed ({type(exc).__name__}: {first})")


#: where the exceptions of a failing store come from (MLflow's client, HTTP, SQL drivers, S3)
STORE_EXCEPTION_MODULES = ("mlflow", "requests", "urllib3", "sqlalchemy", "sqlite3", "psycopg2", "psycopg",
                           "botocore", "boto3")


def is_store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the store's (raised by MLflow, HTTP, a database driver, or I/O)."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in STORE_EXCEPTION_MODULES


@contextmanager
def store_calls(uri: str) -> Iterator[None]:
    """A block of tracking calls outside :class:`~lstm_exp.tracking.mlflow_run.MlflowRun` (the
    lookup of an earlier measurement): what the store raises (:func:`is_store_failure`), or
    anything raised while the store no longer answers (:func:`store_works`), becomes one
    :class:`TrackingError` line naming the URI; anything else is lstm_exp's own fault and
    propagates as it is."""
    try:
        yield
    except LstmExpError:
        raise
    except Exception as exc:
        if not is_store_failure(exc) and store_works(uri):
            raise
        raise tracking_error(uri, exc) from None


def check_store_or_exit(uri: str) -> None:
    """:func:`check_store` for the launching process of a sweep: one line and exit 1 (before any job)."""
    try:
        check_store(uri)
    except StoreError as err:
        print(f"lstm_exp: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def store_works(uri: str) -> bool:
    """Whether the store still answers (after a tracking call failed: the store's fault or a bug?)."""
    try:
        check_store(uri)
        return True
    except StoreError:
        return False


def sweep_store_failed(uri: str, exc: BaseException, sweep_dir: Path) -> None:
    """The end of a sweep whose store failed: one line, exit 1; the parent run stays as it was."""
    print(f"lstm_exp: error: {tracking_error(uri, exc)}; the jobs' results are kept in their folders under "
          f"{sweep_dir}; when the store is back: python -m lstm_exp.sync {sweep_dir}", file=sys.stderr)
    raise SystemExit(1) from None
