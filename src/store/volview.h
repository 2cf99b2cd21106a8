/* Volumes inside containers: each mount of a volume in a container is a view, a host directory of its own
 * (<state>/volumes/views/<task>/<n>) that the runtime bind-mounts at the mount path. A view starts as a copy of
 * the volume's committed tree (or of its sub_path), made from the blocks; what the container writes stays in its
 * view until it is committed.
 *
 *   commit  scan the view and publish what changed since the view was last in step with the volume: new and
 *           modified files are cut into blocks (stored once) and every change becomes one transaction of
 *           cove_volume_apply (last writer wins per path); unchanged files are recognized by their stat (inode,
 *           size, mtime, ctime, mode) and cost nothing.
 *   reload  commit, then bring the volume's current tree into the view: entries others changed are rewritten
 *           (atomically, by rename), entries others removed go; an entry the container changed after the commit's
 *           scan is left alone (it is committed next time).
 *
 * Commits happen when the container calls commit() or reload(), every COVE_VOLUME_COMMIT_INTERVAL_S seconds in
 * the background (default 5, for mounts with allow_background_commits), and one last time when the container
 * exits, whatever way it exits. Read-only views are never committed. Scans, hashing and copies run on worker
 * threads; only SQLite transactions run on the event loop. A view serves one operation at a time, in order.
 *
 * The container may change its view while a commit or reload runs in it (it may swap a directory for a symlink
 * to anywhere on the host between two steps): every host-side step goes through descriptors opened beneath the
 * view's root without following symlinks (util/safepath.h), so such a swap makes the entry count as the
 * container's change, and nothing is ever read or written outside the view. */
#ifndef COVE_STORE_VOLVIEW_H
#define COVE_STORE_VOLVIEW_H

#include <stddef.h>

#include "api.pb-c.h"
#include "util/error.h"

struct cove_ctx;
struct cove_call;
struct cove_container_mount;

/* Start and stop (server.c); stop finishes the operations under way first. */
int cove_volview_start(struct cove_ctx *ctx, struct cove_error **err);
void cove_volview_stop(struct cove_ctx *ctx);

/* Task start (sched.c): a view for each of def's volume mounts, filled from the volume, and the runtime's mount
 * list for them (*mounts is NULL when def has none). Fails with NOT_FOUND for a deleted volume and
 * INVALID_ARGUMENT for a mount path the process runtime cannot give a container (the root, system directories, a
 * directory holding Cove's state or the interpreter). Free the list with cove_volume_mounts_free; the views live
 * until cove_volview_task_exit. */
int cove_volume_mounts_for_task(struct cove_ctx *ctx, const char *task_id, const Modal__Client__Function *def,
				struct cove_container_mount **mounts, size_t *n_mounts, struct cove_error **err);
void cove_volume_mounts_free(struct cove_container_mount *mounts, size_t n_mounts);
/* The task's container is gone (or never started): its writable views are committed a last time, then removed;
 * then on_done(arg) runs (NULL: nothing), in the loop, at once if the task has no views. While the server stops,
 * on_done is not called. */
void cove_volview_task_exit(const char *task_id, void (*on_done)(void *arg), void *arg);

/* VolumeCommit / VolumeReload from a container: answer call once the task's views of volume_id are done
 * (FAILED_PRECONDITION if the task does not mount it). */
void cove_volview_commit(struct cove_call *call, const char *task_id, const char *volume_id);
void cove_volview_reload(struct cove_call *call, const char *task_id, const char *volume_id);

/* Whether views run (start succeeded and stop has not begun). */
int cove_volview_running(void);
/* Run blocking volume work (reading and hashing uploads) on the worker threads: work there, done on the loop. */
void cove_volume_submit(void (*work)(void *arg), void (*done)(void *arg), void *arg);

/* Containers hydrate their Volume handles from the app layout: give each volume object in it its metadata. */
void cove_volume_fill_layout(Modal__Client__AppLayout *layout);

#endif
