/* A few worker threads for blocking file-system work (hashing and copying gigabytes), so that the event loop
 * never waits on a disk for long. A job's `work` runs on a worker thread; its `done` then runs on the event loop
 * thread. While a job runs, the loop must not touch what the job's arg owns; that is the whole contract, and the
 * only shared state is the queue itself. Jobs start in submission order (several may run at once). */
#ifndef COVE_UTIL_WORKQ_H
#define COVE_UTIL_WORKQ_H

#include "util/error.h"

struct event_base;
struct cove_workq;

/* n_threads workers; NULL + *err if a thread or the wake-up event cannot be made. */
struct cove_workq *cove_workq_new(struct event_base *base, int n_threads, struct cove_error **err);
void cove_workq_submit(struct cove_workq *q, void (*work)(void *arg), void (*done)(void *arg), void *arg);
/* Finish every submitted job (work, then done, on the caller's thread for the dones), stop the threads, free.
 * NULL is a no-op. */
void cove_workq_free(struct cove_workq *q);

#endif
