/* Worker threads: a mutex-protected FIFO of jobs to run and a list of finished ones, which an eventfd hands back to
 * the event loop. */
#include "util/workq.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/log.h"

struct job {
	struct job *next;
	void (*work)(void *arg);
	void (*done)(void *arg);
	void *arg;
};

struct cove_workq {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *todo_head, *todo_tail;
	struct job *done_head, *done_tail;
	int stopping;
	int efd;
	struct event *ev;
	pthread_t *threads;
	int n_threads;
};

static void
append(struct job **head, struct job **tail, struct job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

static void *
worker(void *arg)
{
	struct cove_workq *q = arg;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (q->todo_head == NULL && !q->stopping)
			pthread_cond_wait(&q->cv, &q->mu);
		struct job *j = q->todo_head;
		if (j == NULL)
			break; /* stopping, and nothing left to do */
		q->todo_head = j->next;
		if (q->todo_head == NULL)
			q->todo_tail = NULL;
		pthread_mutex_unlock(&q->mu);
		j->work(j->arg);
		pthread_mutex_lock(&q->mu);
		append(&q->done_head, &q->done_tail, j);
		uint64_t one = 1;
		ssize_t w = write(q->efd, &one, sizeof(one));
		(void)w; /* the counter cannot overflow in practice; a lost wake-up is impossible while it is nonzero */
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

/* Run the dones of finished jobs (loop thread). */
static void
drain_done(struct cove_workq *q)
{
	pthread_mutex_lock(&q->mu);
	struct job *j = q->done_head;
	q->done_head = q->done_tail = NULL;
	pthread_mutex_unlock(&q->mu);
	while (j) {
		struct job *next = j->next;
		j->done(j->arg);
		free(j);
		j = next;
	}
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	uint64_t n;
	ssize_t r = read(fd, &n, sizeof(n));
	(void)r;
	drain_done(arg);
}

struct cove_workq *
cove_workq_new(struct event_base *base, int n_threads, struct cove_error **err)
{
	struct cove_workq *q = xcalloc(1, sizeof(*q));
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->efd < 0) {
		cove_error_set_errno(err, errno, "worker threads: eventfd");
		cove_workq_free(q);
		return NULL;
	}
	q->ev = event_new(base, q->efd, EV_READ | EV_PERSIST, on_wake, q);
	if (q->ev == NULL || event_add(q->ev, NULL) < 0) {
		cove_error_set(err, COVE_INTERNAL, "worker threads: cannot watch the wake-up event");
		cove_workq_free(q);
		return NULL;
	}
	q->threads = xcalloc((size_t)n_threads, sizeof(pthread_t));
	for (int i = 0; i < n_threads; i++) {
		int rc = pthread_create(&q->threads[i], NULL, worker, q);
		if (rc != 0) {
			cove_error_set_errno(err, rc, "worker threads: pthread_create");
			cove_workq_free(q);
			return NULL;
		}
		q->n_threads++;
	}
	return q;
}

void
cove_workq_submit(struct cove_workq *q, void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&q->mu);
	append(&q->todo_head, &q->todo_tail, j);
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

void
cove_workq_free(struct cove_workq *q)
{
	if (q == NULL)
		return;
	pthread_mutex_lock(&q->mu);
	q->stopping = 1;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	for (int i = 0; i < q->n_threads; i++)
		pthread_join(q->threads[i], NULL);
	/* Jobs nobody ran (no threads started): run them here. */
	struct job *j;
	while ((j = q->todo_head) != NULL) {
		q->todo_head = j->next;
		j->work(j->arg);
		append(&q->done_head, &q->done_tail, j);
	}
	q->todo_tail = NULL;
	drain_done(q);
	if (q->ev)
		event_free(q->ev);
	if (q->efd >= 0)
		close(q->efd);
	free(q->threads);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
	free(q);
}
