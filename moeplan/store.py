"""Study stores from URLs: SQLite (default), any SQLAlchemy URL, `journal:PATH`, or `:memory:`.

Opening a store never harms what is in it: a store holding another application's tables is refused
before anything is written, a journal whose last record a crash cut off is refused before anything is
appended, a server that does not answer is given up after `CONNECT_TIMEOUT_S`, and an existing SQLite store
at Optuna's current schema is opened without Optuna's migration machinery (alembic, about 0.1 s) and, when
it is the schema `moeplan.sqlite_store` was written for, without SQLAlchemy (about 0.2 s more).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import threading
from functools import cache
from pathlib import Path

import optuna

from moeplan.errors import MoeplanError

DEFAULT_STORAGE = "sqlite:///moeplan.db"
CONNECT_TIMEOUT_S = 10  # a database server that has not answered by then is not going to
SQLITE_LOCK_TIMEOUT_S = 60  # concurrent writers wait for SQLite's lock this long instead of failing at once
OWN_TABLE_PREFIX = "moeplan_"  # tables of moeplan's own (the `serve` job queue) share the store


def in_memory(url: str) -> bool:
    return url in (":memory:", "memory")


def store_file(url: str) -> Path | None:
    """The file behind an SQLite or journal store URL (None for server and in-memory stores)."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix))
    return None


def open_storage(url: str | None):
    """An Optuna storage for `url`, or a one-line `MoeplanError` saying why not."""
    url = url or DEFAULT_STORAGE
    try:
        if in_memory(url):
            return optuna.storages.InMemoryStorage()
        if url.startswith("journal:"):
            return _journal_storage(store_file(url))
        storage = _rdb_storage(url)
    except MoeplanError:
        raise
    except Exception as err:  # SQLAlchemy, drivers and Optuna raise many kinds; the user needs one line
        raise MoeplanError(f"cannot open storage {url!r}: {_first_line(err)}") from None
    if url.startswith("sqlite") and hasattr(storage, "engine"):  # SQLiteStorage sets its own
        _sqlite_pragmas(storage.engine)
    return storage


def _first_line(err: BaseException) -> str:
    cause = getattr(err, "orig", None) or err  # SQLAlchemy wraps the driver's error, whose text is clearer
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- journal files ------------------------------------------------------------------------------------
def _journal_storage(path: Path):
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._file import get_lock_file

    if path.is_dir():
        raise MoeplanError(f"{path}: a folder, not a journal file")
    backend = JournalFileBackend(str(path))
    if path.is_file():
        with get_lock_file(backend._lock):  # a writer holding the lock may be mid-line; a crashed one is not
            size = path.stat().st_size
            torn = size > 0 and _last_byte(path) != b"\n"
            whole = _whole_size(path) if torn else size
        if torn:
            raise MoeplanError(f"{path}: its last record was cut off by a crash; moeplan will not append to it "
                               f"(Optuna reads it without that record; to keep the rest: truncate -s {whole} "
                               f"{path})")
    return optuna.storages.JournalStorage(backend)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _whole_size(path: Path) -> int:
    """Bytes up to and including the last newline: the records a torn journal still holds whole."""
    with open(path, "rb") as f:
        data = f.read()
    return data.rfind(b"\n") + 1


# -- SQL databases ------------------------------------------------------------------------------------
def _sqlite_pragmas(engine) -> None:
    import sqlalchemy

    from moeplan.sqlite_store import PRAGMAS

    if getattr(engine, "_moeplan_pragmas", False):  # a new store set them before making its tables
        return
    engine._moeplan_pragmas = True

    @sqlalchemy.event.listens_for(engine, "connect")
    def _pragmas(connection, _record):
        cursor = connection.cursor()
        for pragma in PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    engine.dispose()


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
    if url.startswith(("postgresql", "mysql")):  # libpq, psycopg, PyMySQL and mysqlclient all take it
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


@cache
def optuna_tables() -> frozenset[str]:
    """Optuna's tables, alembic's included (from the generated schema: Optuna's models import SQLAlchemy)."""
    from moeplan import _optuna_schema

    return frozenset(_optuna_schema.TABLES)


def foreign_tables(tables: set[str]) -> list[str]:
    """Tables that are neither Optuna's nor moeplan's own."""
    return sorted(t for t in tables if t not in optuna_tables() and not t.startswith(OWN_TABLE_PREFIX)
                  and not t.startswith("sqlite_"))


def _refuse_foreign(url: str, tables: set[str]) -> None:
    foreign = foreign_tables(tables)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise MoeplanError(f"{url} holds tables of another application ({shown}); moeplan will not add its "
                           "tables there: give a store of its own")


def _sqlite_tables(path: Path) -> set[str] | None:
    """The tables of an existing SQLite file (None if there is no file or an empty one), read-only."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as err:
        raise MoeplanError(f"{path}: not an SQLite database ({err})") from None


def _sqlite_tables_or_none(path: Path) -> set[str] | None:
    try:
        return _sqlite_tables(path)
    except MoeplanError:
        return None


@cache
def _schema_head() -> str:
    """The newest revision of Optuna's schema, read from its migration scripts without importing alembic."""
    from optuna.storages._rdb import storage as rdb

    versions = Path(rdb.__file__).parent / "alembic" / "versions"
    revision, down = {}, set()
    for script in versions.glob("*.py"):
        text = script.read_text()
        rev = re.search(r'^revision\s*=\s*"([^"]+)"', text, re.M)
        parent = re.search(r'^down_revision\s*=\s*"([^"]+)"', text, re.M)
        if rev:
            revision[rev.group(1)] = script
        if parent:
            down.add(parent.group(1))
    heads = set(revision) - down
    return heads.pop() if len(heads) == 1 else ""


def _sqlite_revision(path: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT version_num FROM alembic_version").fetchall()
    return rows[0][0] if len(rows) == 1 else None


class _SchemaAtHead:
    """Stands in for Optuna's `_VersionManager` on a store already at Optuna's current schema: answers the
    version questions (optuna-dashboard asks them) without alembic; anything else goes to the real one."""

    def __init__(self, *args) -> None:
        self._args = args

    def get_current_version(self) -> str:
        return _schema_head()

    get_head_version = get_current_version

    def check_table_schema_compatibility(self) -> None:
        pass

    def __getattr__(self, name: str):
        from optuna.storages._rdb import storage as rdb

        return getattr(rdb._VersionManager(*self._args), name)


_patch_lock = threading.Lock()


def _rdb_storage(url: str):
    """An RDBStorage. Existing SQLite stores at Optuna's schema skip table creation and alembic; a fresh one
    is created under an exclusive lock on its file, so two plans starting together do not race on it."""
    kwargs = {"engine_kwargs": _engine_kwargs(url)}
    path = store_file(url)
    if path is None:
        _refuse_foreign(url, _server_tables(url, kwargs["engine_kwargs"]))
        return _server_storage(url, kwargs)
    if path.is_dir():
        raise MoeplanError(f"{path}: a folder, not an SQLite file")
    tables = _sqlite_tables(path)
    if tables is not None:
        _refuse_foreign(url, tables)
        if _at_head(path, tables):
            return _at_head_storage(url, path, kwargs)
    return _create_sqlite(url, path, kwargs)


def _server_storage(url: str, kwargs: dict, attempts: int = 5):
    """An RDBStorage on a database server. Workers that meet a fresh database race to create Optuna's tables
    (PostgreSQL: a unique violation on pg_type); the losers retry, and by then the tables exist."""
    import time

    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    for attempt in range(attempts):
        try:
            return RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _at_head(path: Path, tables: set[str]) -> bool:
    return {"studies", "trials", "version_info"} <= tables and _sqlite_revision(path) == _schema_head() != ""


def _sqlite3_store() -> bool:
    """Whether moeplan's sqlite3 storage fits: the installed Optuna's schema is the one it was written for."""
    from moeplan import _optuna_schema, sqlite_store

    return sqlite_store.WRITTEN_FOR == _optuna_schema.REVISION == _schema_head()


def _at_head_storage(url: str, path: Path, kwargs: dict):
    """A storage on a store at Optuna's current schema: moeplan's own over sqlite3 if it fits, else RDBStorage."""
    if _sqlite3_store():
        from moeplan.sqlite_store import SQLiteStorage

        return SQLiteStorage(path, SQLITE_LOCK_TIMEOUT_S)
    return _without_migration(url, kwargs)


def _without_migration(url: str, kwargs: dict):
    """An RDBStorage on a store at Optuna's current schema, made without table creation or alembic."""
    from optuna.storages import RDBStorage
    from optuna.storages._rdb import storage as rdb

    with _patch_lock:
        saved, rdb._VersionManager = rdb._VersionManager, _SchemaAtHead
        try:
            return RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True, **kwargs)
        finally:
            rdb._VersionManager = saved


def _create_sqlite(url: str, path: Path, kwargs: dict):
    """A new SQLite store: Optuna's schema, its version row and alembic's revision stamp, in one transaction
    (Optuna makes them in dozens, alembic included: 0.4 s), under an exclusive lock on the file so that two
    plans starting together do not race on it."""
    from optuna.storages import RDBStorage

    created = not path.exists()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # honours the umask, as SQLite would
    except OSError as err:
        raise MoeplanError(f"cannot open storage {url!r}: {err.strerror}: {path}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # flock, not SQLite's own fcntl locks: the two do not interfere
        tables = _sqlite_tables(path)  # another process may have made it while this one waited
        if tables is not None:
            _refuse_foreign(url, tables)
        if tables and _at_head(path, tables):
            return _at_head_storage(url, path, kwargs)
        if tables or not _schema_head():  # an older or partial Optuna store: Optuna's own path migrates it
            return RDBStorage(url, **kwargs)
        if _sqlite3_store():
            from moeplan.sqlite_store import SQLiteStorage

            return SQLiteStorage.create(path, SQLITE_LOCK_TIMEOUT_S)
        storage = _without_migration(url, kwargs)
        _sqlite_pragmas(storage.engine)
        _create_schema(storage.engine)
        return storage
    except BaseException:
        if created and path.exists() and not _sqlite_tables_or_none(path):
            for leftover in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
                leftover.unlink(missing_ok=True)  # no empty file behind a failure (WAL mode writes a header)
        raise
    finally:
        os.close(fd)


def _create_schema(engine) -> None:
    """What `RDBStorage` and alembic write into an empty database (tests/test_reliability.py compares them)."""
    import sqlalchemy
    from optuna.storages._rdb import models

    with engine.begin() as connection:
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite would run each CREATE TABLE on its own
        models.BaseModel.metadata.create_all(connection)
        connection.exec_driver_sql("CREATE TABLE alembic_version (\n\tversion_num VARCHAR(32) NOT NULL, \n\t"
                                   "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)")
        connection.execute(sqlalchemy.text("INSERT INTO alembic_version (version_num) VALUES (:v)"),
                           {"v": _schema_head()})
        connection.execute(models.VersionInfoModel.__table__.insert().values(
            version_info_id=1, schema_version=models.SCHEMA_VERSION, library_version=optuna.__version__))


def _server_tables(url: str, engine_kwargs: dict) -> set[str]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        with engine.connect() as connection:
            return set(sqlalchemy.inspect(connection).get_table_names())
    finally:
        engine.dispose()
