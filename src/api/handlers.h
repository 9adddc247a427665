/* SPDX-License-Identifier: Apache-2.0 */
/* Generated from api/schema/api.json by scripts/gen-api.mjs, do not edit. */
/*
 * Handlers of the native API, one per route in api/schema/api.json, implemented in src/api/v1/.
 * Each runs on the loop thread and replies exactly once, now or later (src/api/server.h).
 */
#pragma once

#include "api/server.h"

/* GET /v1/health: Check that the daemon is up (no auth) */
void v1_health(struct http_request *req);
/* GET /metrics: Prometheus metrics */
void v1_metrics(struct http_request *req);
/* POST /v1/sandboxes: Create a sandbox */
void v1_sandbox_create(struct http_request *req);
/* GET /v1/sandboxes: List sandboxes */
void v1_sandbox_list(struct http_request *req);
/* GET /v1/sandboxes/{id}: Get a sandbox */
void v1_sandbox_get(struct http_request *req);
/* DELETE /v1/sandboxes/{id}: Delete a sandbox */
void v1_sandbox_delete(struct http_request *req);
/* POST /v1/sandboxes/{id}/stop: Stop a sandbox */
void v1_sandbox_stop(struct http_request *req);
/* POST /v1/sandboxes/{id}/start: Start a stopped sandbox */
void v1_sandbox_start(struct http_request *req);
/* POST /v1/sandboxes/{id}/pause: Pause a sandbox */
void v1_sandbox_pause(struct http_request *req);
/* POST /v1/sandboxes/{id}/resume: Resume a paused sandbox */
void v1_sandbox_resume(struct http_request *req);
/* POST /v1/sandboxes/{id}/hibernate: Hibernate a sandbox */
void v1_sandbox_hibernate(struct http_request *req);
/* POST /v1/sandboxes/{id}/wake: Wake a hibernated sandbox */
void v1_sandbox_wake(struct http_request *req);
/* GET /v1/sandboxes/{id}/events: List a sandbox's events */
void v1_sandbox_events(struct http_request *req);
/* GET /v1/events: Follow every event (SSE) */
void v1_events(struct http_request *req);
/* POST /v1/sandboxes/{id}/snapshots: Snapshot a sandbox */
void v1_snapshot_create(struct http_request *req);
/* POST /v1/sandboxes/{id}/fork: Fork a sandbox */
void v1_sandbox_fork(struct http_request *req);
/* POST /v1/sandboxes/{id}/checkpoints: Make a named checkpoint */
void v1_checkpoint_create(struct http_request *req);
/* GET /v1/sandboxes/{id}/checkpoints: List a sandbox's checkpoints */
void v1_checkpoint_list(struct http_request *req);
/* GET /v1/sandboxes/{id}/checkpoints/{name}: Get a checkpoint */
void v1_checkpoint_get(struct http_request *req);
/* DELETE /v1/sandboxes/{id}/checkpoints/{name}: Delete a checkpoint */
void v1_checkpoint_delete(struct http_request *req);
/* POST /v1/sandboxes/{id}/checkpoints/{name}/restore: Restore a checkpoint in place */
void v1_checkpoint_restore(struct http_request *req);
/* GET /v1/snapshots: List snapshots */
void v1_snapshot_list(struct http_request *req);
/* GET /v1/snapshots/{sid}: Get a snapshot */
void v1_snapshot_get(struct http_request *req);
/* DELETE /v1/snapshots/{sid}: Delete a snapshot */
void v1_snapshot_delete(struct http_request *req);
/* GET /v1/snapshots/{sid}/lineage: A snapshot's lineage */
void v1_snapshot_lineage(struct http_request *req);
/* POST /v1/snapshots/{sid}/tags: Tag a snapshot */
void v1_snapshot_tag(struct http_request *req);
/* DELETE /v1/snapshots/{sid}/tags/{tag}: Remove a tag */
void v1_snapshot_untag(struct http_request *req);
/* POST /v1/snapshots/{sid}/patches: Attach a patch script */
void v1_patch_create(struct http_request *req);
/* GET /v1/snapshots/{sid}/patches: List patch scripts */
void v1_patch_list(struct http_request *req);
/* DELETE /v1/snapshots/{sid}/patches/{pid}: Remove a patch script */
void v1_patch_delete(struct http_request *req);
/* PATCH /v1/sandboxes/{id}: Change timers and metadata */
void v1_sandbox_update(struct http_request *req);
/* POST /v1/sandboxes/{id}/exec: Run a command in a sandbox */
void v1_sandbox_exec(struct http_request *req);
/* POST /v1/sandboxes/{id}/processes: Start a process */
void v1_process_start(struct http_request *req);
/* GET /v1/sandboxes/{id}/processes: List processes */
void v1_process_list(struct http_request *req);
/* GET /v1/sandboxes/{id}/processes/{pid}: Get a process */
void v1_process_get(struct http_request *req);
/* POST /v1/sandboxes/{id}/processes/{pid}/signal: Signal a process */
void v1_process_signal(struct http_request *req);
/* POST /v1/sandboxes/{id}/processes/{pid}/stdin: Write to stdin */
void v1_process_stdin(struct http_request *req);
/* POST /v1/sandboxes/{id}/processes/{pid}/stdin/close: Close stdin */
void v1_process_stdin_close(struct http_request *req);
/* POST /v1/sandboxes/{id}/processes/{pid}/resize: Resize a terminal */
void v1_process_resize(struct http_request *req);
/* GET /v1/sandboxes/{id}/processes/{pid}/wait: Wait for the exit */
void v1_process_wait(struct http_request *req);
/* GET /v1/sandboxes/{id}/processes/{pid}/attach: Follow a process (WebSocket or SSE) */
void v1_process_attach(struct http_request *req);
/* GET /v1/sandboxes/{id}/processes/{pid}/stdout: Read stdout */
void v1_process_stdout(struct http_request *req);
/* GET /v1/sandboxes/{id}/processes/{pid}/stderr: Read stderr */
void v1_process_stderr(struct http_request *req);
/* POST /v1/sandboxes/{id}/code: Run code */
void v1_code_run(struct http_request *req);
/* POST /v1/sandboxes/{id}/contexts: Create a code context */
void v1_context_create(struct http_request *req);
/* GET /v1/sandboxes/{id}/contexts: List code contexts */
void v1_context_list(struct http_request *req);
/* GET /v1/sandboxes/{id}/contexts/{cid}: Get a code context */
void v1_context_get(struct http_request *req);
/* DELETE /v1/sandboxes/{id}/contexts/{cid}: Delete a code context */
void v1_context_delete(struct http_request *req);
/* POST /v1/sandboxes/{id}/jobs: Start a job */
void v1_job_create(struct http_request *req);
/* GET /v1/sandboxes/{id}/jobs: List jobs */
void v1_job_list(struct http_request *req);
/* GET /v1/sandboxes/{id}/jobs/{jid}: Get a job */
void v1_job_get(struct http_request *req);
/* POST /v1/sandboxes/{id}/jobs/{jid}/stop: Stop a job */
void v1_job_stop(struct http_request *req);
/* POST /v1/sandboxes/{id}/sessions: Create a session */
void v1_session_create(struct http_request *req);
/* GET /v1/sandboxes/{id}/sessions: List sessions */
void v1_session_list(struct http_request *req);
/* GET /v1/sandboxes/{id}/sessions/{sid}: Get a session */
void v1_session_get(struct http_request *req);
/* DELETE /v1/sandboxes/{id}/sessions/{sid}: Delete a session */
void v1_session_delete(struct http_request *req);
/* POST /v1/sandboxes/{id}/sessions/{sid}/exec: Run a command in a session */
void v1_session_exec(struct http_request *req);
/* GET /v1/sandboxes/{id}/files/{path*}: Read a file */
void v1_file_get(struct http_request *req);
/* PUT /v1/sandboxes/{id}/files/{path*}: Write a file (body streamed to a file) */
void v1_file_put(struct http_request *req);
/* GET /v1/sandboxes/{id}/fs: Stat, test or list paths */
void v1_fs_get(struct http_request *req);
/* POST /v1/sandboxes/{id}/fs: Change the filesystem */
void v1_fs_post(struct http_request *req);
/* POST /v1/sandboxes/{id}/fs/search: Search file contents */
void v1_fs_search(struct http_request *req);
/* POST /v1/sandboxes/{id}/fs/replace: Replace text in files */
void v1_fs_replace(struct http_request *req);
/* POST /v1/sandboxes/{id}/fs/batch: Write and delete many files */
void v1_fs_batch(struct http_request *req);
/* GET /v1/sandboxes/{id}/archive: Download a directory as tar.gz */
void v1_archive_get(struct http_request *req);
/* PUT /v1/sandboxes/{id}/archive: Upload and extract a tar(.gz) (body streamed to a file) */
void v1_archive_put(struct http_request *req);
/* POST /v1/sandboxes/{id}/watchers: Watch a directory */
void v1_watcher_create(struct http_request *req);
/* GET /v1/sandboxes/{id}/watchers: List watchers */
void v1_watcher_list(struct http_request *req);
/* GET /v1/sandboxes/{id}/watchers/{wid}: Get a watcher */
void v1_watcher_get(struct http_request *req);
/* DELETE /v1/sandboxes/{id}/watchers/{wid}: Delete a watcher */
void v1_watcher_delete(struct http_request *req);
/* GET /v1/sandboxes/{id}/watchers/{wid}/events: Follow a watcher (SSE or WebSocket) */
void v1_watcher_events(struct http_request *req);
/* GET /v1/templates: List templates */
void v1_template_list(struct http_request *req);
/* POST /v1/templates: Build a template from a spec */
void v1_template_build(struct http_request *req);
/* POST /v1/templates/import: Import an OCI image (body streamed to a file) */
void v1_template_import(struct http_request *req);
/* GET /v1/layers: List layers */
void v1_layer_list(struct http_request *req);
/* POST /v1/layers/gc: Collect unused layers */
void v1_layer_gc(struct http_request *req);
/* GET /v1/templates/{name}: Get a template */
void v1_template_get(struct http_request *req);
/* DELETE /v1/templates/{name}: Remove a template */
void v1_template_delete(struct http_request *req);
/* GET /v1/templates/{name}/build: Build status */
void v1_template_build_status(struct http_request *req);
/* GET /v1/templates/{name}/build/events: Follow a build (SSE) */
void v1_template_build_events(struct http_request *req);
/* GET /v1/templates/{name}/export: Export as an OCI image */
void v1_template_export(struct http_request *req);
