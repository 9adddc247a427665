-- SPDX-License-Identifier: Apache-2.0
-- sbx: foreign_keys=off
-- Lifecycle (issue 6): the states paused, hibernating, hibernated and waking, and the deadlines
-- the timers need stored as instants (so they survive an sbxd restart): expires_ms (lifetime),
-- active_ms (last activity, for the idle timeout), paused_ms (when the sandbox was paused, for
-- the paused timeout). SQLite cannot change a CHECK in place: the table is rebuilt (the runner
-- turns foreign keys off around this migration, as the first comment line asks, and checks them
-- before it commits).
CREATE TABLE sandboxes_new (
        id              TEXT NOT NULL PRIMARY KEY CHECK (id != ''),
        name            TEXT NOT NULL DEFAULT '',
        template_name   TEXT NOT NULL DEFAULT '',
        state           TEXT NOT NULL CHECK (state IN ('creating', 'running', 'stopping', 'stopped',
                                                       'starting', 'failed', 'deleted', 'paused',
                                                       'hibernating', 'hibernated', 'waking')),
        state_reason    TEXT NOT NULL DEFAULT '',
        owner           TEXT NOT NULL DEFAULT '',
        project         TEXT NOT NULL DEFAULT '',
        spec_json       TEXT CHECK (spec_json IS NULL OR json_valid(spec_json)),
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
        deleted_ms      INTEGER NOT NULL DEFAULT 0,
        expires_ms      INTEGER NOT NULL DEFAULT 0,
        active_ms       INTEGER NOT NULL DEFAULT 0,
        paused_ms       INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO sandboxes_new (id, name, template_name, state, state_reason, owner, project, spec_json,
                           metadata_json, uid_slot, init_pid, init_start_time, cgroup_name,
                           created_ms, updated_ms, started_ms, deleted_ms, expires_ms)
        SELECT id, name, template_name, state, state_reason, owner, project, spec_json, metadata_json,
               uid_slot, init_pid, init_start_time, cgroup_name, created_ms, updated_ms, started_ms,
               deleted_ms,
               CASE WHEN spec_json IS NOT NULL
                         AND json_type(spec_json, '$.timeout.lifetime') = 'integer'
                    THEN created_ms + 1000 * json_extract(spec_json, '$.timeout.lifetime')
                    ELSE 0 END
        FROM sandboxes;

DROP TABLE sandboxes;
ALTER TABLE sandboxes_new RENAME TO sandboxes;

CREATE UNIQUE INDEX sandboxes_name_live ON sandboxes (name) WHERE name != '' AND state != 'deleted';
CREATE UNIQUE INDEX sandboxes_uid_slot_live ON sandboxes (uid_slot) WHERE state != 'deleted';
CREATE INDEX sandboxes_order ON sandboxes (created_ms, id);
