"""The SQLite schema and its forward migrations.

``MIGRATIONS[i]`` takes the database from version ``i`` to ``i + 1``; it is a
list of single statements (never ``executescript``, which commits on its own)
run inside the transaction that also bumps ``schema_version``. A migration is
never edited once released: changes are new entries at the end.
"""

from __future__ import annotations

import sqlite3

from berth.errors import FailedPrecondition

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version    INTEGER NOT NULL,
    updated_at REAL NOT NULL
)"""

_V1 = [
    """CREATE TABLE namespaces (
        name       TEXT PRIMARY KEY,
        labels     TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE images (
        namespace         TEXT NOT NULL REFERENCES namespaces(name) ON DELETE RESTRICT,
        name              TEXT NOT NULL,
        target_media_type TEXT NOT NULL,
        target_digest     TEXT NOT NULL,
        target_size       INTEGER NOT NULL CHECK (target_size >= 0),
        labels            TEXT NOT NULL DEFAULT '{}',
        created_at        REAL NOT NULL,
        updated_at        REAL NOT NULL,
        PRIMARY KEY (namespace, name)
    )""",
    "CREATE INDEX images_by_target ON images(namespace, target_digest)",
    "CREATE INDEX images_by_digest ON images(target_digest)",
    """CREATE TABLE containers (
        namespace    TEXT NOT NULL REFERENCES namespaces(name) ON DELETE RESTRICT,
        id           TEXT NOT NULL,
        name         TEXT NOT NULL,
        image        TEXT NOT NULL DEFAULT '',
        snapshotter  TEXT NOT NULL DEFAULT '',
        snapshot_key TEXT NOT NULL DEFAULT '',
        runtime      TEXT NOT NULL DEFAULT '',
        spec         TEXT,
        labels       TEXT NOT NULL DEFAULT '{}',
        extensions   TEXT NOT NULL DEFAULT '{}',
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL,
        PRIMARY KEY (namespace, id),
        UNIQUE (namespace, name)
    )""",
    """CREATE TABLE leases (
        namespace  TEXT NOT NULL REFERENCES namespaces(name) ON DELETE RESTRICT,
        id         TEXT NOT NULL,
        expires_at REAL,
        labels     TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        PRIMARY KEY (namespace, id)
    )""",
    """CREATE TABLE lease_resources (
        namespace   TEXT NOT NULL,
        lease_id    TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('content', 'ingest', 'snapshot')),
        snapshotter TEXT NOT NULL DEFAULT '',
        ref         TEXT NOT NULL,
        PRIMARY KEY (namespace, lease_id, kind, snapshotter, ref),
        FOREIGN KEY (namespace, lease_id) REFERENCES leases(namespace, id) ON DELETE CASCADE
    )""",
    # Blob -> blobs it references (index -> manifests, manifest -> config + layers).
    # Content is shared by all namespaces, so these are global.
    """CREATE TABLE content_refs (
        parent TEXT NOT NULL,
        child  TEXT NOT NULL,
        PRIMARY KEY (parent, child)
    ) WITHOUT ROWID""",
    # Blob (typically an image config) -> committed snapshot it keeps alive.
    """CREATE TABLE snapshot_refs (
        digest      TEXT NOT NULL,
        snapshotter TEXT NOT NULL,
        key         TEXT NOT NULL,
        PRIMARY KEY (digest, snapshotter, key)
    ) WITHOUT ROWID""",
]

# Networks and volumes: per namespace, a unique name, an id and a JSON document the
# services own (driver, IPAM, options / mountpoint, options); labels like the rest.
_V2 = [
    """CREATE TABLE objects (
        namespace  TEXT NOT NULL REFERENCES namespaces(name) ON DELETE RESTRICT,
        kind       TEXT NOT NULL CHECK (kind IN ('network', 'volume')),
        id         TEXT NOT NULL,
        name       TEXT NOT NULL,
        data       TEXT NOT NULL DEFAULT '{}',
        labels     TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (namespace, kind, id),
        UNIQUE (namespace, kind, name)
    )""",
]

MIGRATIONS: list[list[str]] = [_V1, _V2]
LATEST = len(MIGRATIONS)


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version of the database (0 for a new one); reads only."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                        "AND name = 'schema_version'").fetchone():
        return 0
    row = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: sqlite3.Connection, now: float, migrations: list[list[str]] | None = None) -> int:
    """Bring the schema up to date; call inside a write transaction.

    Returns the version reached. Refuses a database written by a newer berth.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    conn.execute(VERSION_TABLE)
    version = current_version(conn)
    if version > len(migrations):
        raise FailedPrecondition(
            f"metadata database schema version {version} is newer than this berth supports "
            f"({len(migrations)}); upgrade berth"
        )
    for v in range(version, len(migrations)):
        for stmt in migrations[v]:
            conn.execute(stmt)
    if version != len(migrations) or version == 0:
        conn.execute(
            "INSERT INTO schema_version (id, version, updated_at) VALUES (1, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
            (len(migrations), now),
        )
    return len(migrations)
