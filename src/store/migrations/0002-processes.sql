-- SPDX-License-Identifier: Apache-2.0
-- Processes started through the processes API (and the sessions, jobs and code contexts built on
-- them), so a restarted sbxd knows which of sbx-init's processes it streams and where their
-- output logs are. The record itself is JSON the core owns (docs/internals/processes.md); the
-- columns are what the store is asked by. A sandbox's rows go when the sandbox is deleted.
CREATE TABLE processes (
        id              TEXT NOT NULL PRIMARY KEY CHECK (id != ''),
        sandbox_id      TEXT NOT NULL REFERENCES sandboxes (id),
        seq             INTEGER NOT NULL CHECK (seq > 0),
        data_json       TEXT NOT NULL CHECK (json_valid(data_json)),
        updated_ms      INTEGER NOT NULL
) STRICT;

CREATE INDEX processes_sandbox ON processes (sandbox_id, seq);
