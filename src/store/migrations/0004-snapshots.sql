-- SPDX-License-Identifier: Apache-2.0
-- Snapshots, checkpoints and fork bases (issue 6, core/snapshots.c): a frozen copy of a sandbox's
-- upper directory kept under <data>/snapshots/<id>, with its lineage (parent_id: the snapshot the
-- source sandbox was created from). The record itself is JSON the core owns (docs/lifecycle.md);
-- the columns are what the store is asked by. sbxd loads every row at start.
CREATE TABLE snapshots (
        id              TEXT NOT NULL PRIMARY KEY CHECK (id != ''),
        kind            TEXT NOT NULL CHECK (kind IN ('snapshot', 'checkpoint', 'fork')),
        sandbox_id      TEXT NOT NULL REFERENCES sandboxes (id),
        parent_id       TEXT REFERENCES snapshots (id),
        data_json       TEXT NOT NULL CHECK (json_valid(data_json)),
        created_ms      INTEGER NOT NULL
) STRICT;

CREATE INDEX snapshots_order ON snapshots (created_ms, id);
CREATE INDEX snapshots_parent ON snapshots (parent_id);
