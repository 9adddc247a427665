-- SPDX-License-Identifier: Apache-2.0
-- The initial catalog: sandboxes, their events, daemon settings. Applied once, in its own
-- transaction, by store-sqlite.c; schema_migrations is created by the runner, not here.
-- Never edit this file once released: add 0002-*.sql instead (docs/internals/store.md).

-- One row per sandbox ever created. Rows are never removed: deleting a sandbox sets
-- state = 'deleted' and deleted_ms, so ids stay unique forever and events keep their parent.
-- owner and project are here from the start so multi-tenancy needs no data migration.
CREATE TABLE sandboxes (
        id              TEXT NOT NULL PRIMARY KEY CHECK (id != ''),
        name            TEXT NOT NULL DEFAULT '',
        template_name   TEXT NOT NULL DEFAULT '',
        state           TEXT NOT NULL CHECK (state IN ('creating', 'running', 'stopping', 'stopped',
                                                       'starting', 'failed', 'deleted')),
        state_reason    TEXT NOT NULL DEFAULT '',
        owner           TEXT NOT NULL DEFAULT '',
        project         TEXT NOT NULL DEFAULT '',
        spec_json       TEXT CHECK (spec_json IS NULL OR json_valid(spec_json)),
        -- CASE, not AND: json_type() raises an error on malformed JSON, CASE never evaluates it then.
        metadata_json   TEXT CHECK (metadata_json IS NULL OR
                                    CASE WHEN json_valid(metadata_json)
                                         THEN json_type(metadata_json) = 'object' ELSE 0 END),
        uid_slot        INTEGER NOT NULL CHECK (uid_slot >= 0),
        init_pid        INTEGER NOT NULL DEFAULT 0,
        init_start_time INTEGER NOT NULL DEFAULT 0,
        cgroup_name     TEXT NOT NULL DEFAULT '',
        created_ms      INTEGER NOT NULL,
        updated_ms      INTEGER NOT NULL DEFAULT 0,
        started_ms      INTEGER NOT NULL DEFAULT 0,
        deleted_ms      INTEGER NOT NULL DEFAULT 0
) STRICT;

-- A name belongs to at most one live sandbox; deleted sandboxes free it.
CREATE UNIQUE INDEX sandboxes_name_live ON sandboxes (name) WHERE name != '' AND state != 'deleted';
-- A uid range belongs to at most one live sandbox.
CREATE UNIQUE INDEX sandboxes_uid_slot_live ON sandboxes (uid_slot) WHERE state != 'deleted';
-- Listing order and cursor paging: (created_ms, id).
CREATE INDEX sandboxes_order ON sandboxes (created_ms, id);

-- Append-only event log. sandbox_id is NULL for daemon-wide events.
CREATE TABLE events (
        id              INTEGER PRIMARY KEY,
        sandbox_id      TEXT REFERENCES sandboxes (id),
        type            TEXT NOT NULL CHECK (type != ''),
        data_json       TEXT CHECK (data_json IS NULL OR json_valid(data_json)),
        created_ms      INTEGER NOT NULL
) STRICT;

CREATE INDEX events_sandbox ON events (sandbox_id, id);

-- Daemon settings such as "daemon.instance".
CREATE TABLE settings (
        key             TEXT NOT NULL PRIMARY KEY,
        value           TEXT NOT NULL
) STRICT;
