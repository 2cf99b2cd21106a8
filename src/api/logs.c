/* Fetching an app's logs by time range and filters (AppFetchLogs, AppCountLogs): `modal container logs`,
 * `modal app logs --since`, Sandbox.logs. They read the app's log records in memory (what AppGetLogs
 * streams), so they cover what this server run has seen, up to the scheduler's cap per app. */
#include <string.h>

#include "api/api.h"
#include "sandbox/sandbox.h"
#include "sched/sched.h"
#include "server.h"
#include "timestamp.pb-c.h"
#include "util/alloc.h"
#include "util/pb.h"

#define DEFAULT_LIMIT 1000
#define MAX_LIMIT 10000
#define MAX_BUCKETS 10000

struct filter {
	double since, until; /* until 0: none */
	int source;          /* FileDescriptor; 0: any */
	const char *function_id, *task_id, *function_call_id, *search;
	int never;           /* a filter nothing can match (an unknown sandbox) */
};

static double
ts_seconds(const Google__Protobuf__Timestamp *t)
{
	return t ? (double)t->seconds + (double)t->nanos / 1e9 : 0;
}

static int
filter_init(struct cove_api_req *req, struct filter *f, const Google__Protobuf__Timestamp *since,
	    const Google__Protobuf__Timestamp *until, int source, const char *function_id, const char *task_id,
	    const char *sandbox_id, const char *function_call_id, const char *search)
{
	memset(f, 0, sizeof(*f));
	f->since = ts_seconds(since);
	f->until = ts_seconds(until);
	if (f->until > 0 && f->until < f->since) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: since must come before until", req->method);
		return -1;
	}
	if (source < 0 || source > MODAL__CLIENT__FILE_DESCRIPTOR__FILE_DESCRIPTOR_INFO) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "%s: unknown log source %d", req->method, source);
		return -1;
	}
	f->source = source;
	f->function_id = function_id;
	f->task_id = task_id;
	f->function_call_id = function_call_id;
	f->search = search;
	if (sandbox_id && *sandbox_id) {
		/* A sandbox's logs are its container's. */
		struct cove_sandbox *sb = cove_sandbox_get(req->ctx->sandboxes, sandbox_id);
		if (sb == NULL || (task_id && *task_id && strcmp(task_id, sb->host.task_id) != 0))
			f->never = 1;
		else
			f->task_id = sb->host.task_id;
	}
	return 0;
}

static int
matches(const struct filter *f, const Modal__Client__TaskLogsBatch *b, const Modal__Client__TaskLogs *item)
{
	if (f->never)
		return 0;
	if (item->timestamp < f->since || (f->until > 0 && item->timestamp >= f->until))
		return 0;
	if (f->source && (int)item->file_descriptor != f->source)
		return 0;
	if (f->function_id && *f->function_id && strcmp(b->function_id, f->function_id) != 0)
		return 0;
	if (f->task_id && *f->task_id && strcmp(b->task_id, f->task_id) != 0)
		return 0;
	if (f->function_call_id && *f->function_call_id && strcmp(item->function_call_id, f->function_call_id) != 0)
		return 0;
	if (f->search && *f->search && strstr(item->data, f->search) == NULL)
		return 0;
	return 1;
}

static struct cove_app *
app_or_fail(struct cove_api_req *req, const char *app_id)
{
	struct cove_app *app = app_id && *app_id ? cove_sched_app_get(req->ctx->sched, app_id) : NULL;
	if (app == NULL)
		cove_api_fail_code(req->call, COVE_NOT_FOUND, "App %s not found", app_id && *app_id ? app_id : "(none given)");
	return app;
}

void
cove_api_AppFetchLogs(struct cove_api_req *req)
{
	const Modal__Client__AppFetchLogsRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	struct filter f;
	if (filter_init(req, &f, r->since, r->until, r->source, r->function_id, r->task_id, r->sandbox_id,
			r->function_call_id, r->search_text) < 0)
		return;
	size_t limit = r->limit ? (r->limit < MAX_LIMIT ? r->limit : MAX_LIMIT) : DEFAULT_LIMIT;
	/* The newest `limit` matches, oldest first: scan backwards, then send in order. */
	cleanup_free Modal__Client__TaskLogsBatch **hits = xcalloc(limit + 1, sizeof(*hits));
	size_t n = 0;
	for (size_t i = app->n_logs; i-- > 0 && n < limit;) {
		Modal__Client__TaskLogsBatch *b =
			pb_unpack(&modal__client__task_logs_batch__descriptor, app->logs[i].batch, app->logs[i].len);
		if (b == NULL)
			continue;
		int keep = 0;
		for (size_t j = 0; j < b->n_items; j++)
			if (matches(&f, b, b->items[j]))
				keep = 1;
		if (!keep) {
			pb_free(b);
			continue;
		}
		/* Only the matching items (a record holds one today). */
		size_t k = 0;
		for (size_t j = 0; j < b->n_items; j++) {
			if (matches(&f, b, b->items[j]))
				b->items[k++] = b->items[j];
			else
				pb_free(b->items[j]);
		}
		b->n_items = k;
		if (b->entry_id != protobuf_c_empty_string)
			free(b->entry_id);
		b->entry_id = xasprintf("%lld", (long long)app->logs[i].id);
		hits[n++] = b;
	}
	for (size_t i = 0; i < n / 2; i++) {
		Modal__Client__TaskLogsBatch *t = hits[i];
		hits[i] = hits[n - 1 - i];
		hits[n - 1 - i] = t;
	}
	Modal__Client__AppFetchLogsResponse resp = MODAL__CLIENT__APP_FETCH_LOGS_RESPONSE__INIT;
	resp.n_batches = n;
	resp.batches = hits;
	cove_api_reply(req->call, &resp.base);
	for (size_t i = 0; i < n; i++)
		pb_free(hits[i]);
}

void
cove_api_AppCountLogs(struct cove_api_req *req)
{
	const Modal__Client__AppCountLogsRequest *r = (const void *)req->msg;
	struct cove_app *app = app_or_fail(req, r->app_id);
	if (app == NULL)
		return;
	struct filter f;
	if (filter_init(req, &f, r->since, r->until, r->source, r->function_id, r->task_id, r->sandbox_id,
			r->function_call_id, r->search_text) < 0)
		return;
	if (r->bucket_secs == 0 || f.until <= 0) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "AppCountLogs: bucket_secs and until are required");
		return;
	}
	/* Buckets aligned to multiples of bucket_secs, covering [since, until). */
	int64_t bs = r->bucket_secs;
	int64_t first = (int64_t)f.since / bs * bs;
	int64_t n_buckets = ((int64_t)f.until - first) / bs + 1;
	if (n_buckets > MAX_BUCKETS) {
		cove_api_fail_code(req->call, COVE_INVALID_ARGUMENT, "AppCountLogs: more than %d buckets asked for",
				   MAX_BUCKETS);
		return;
	}
	cleanup_free Modal__Client__AppCountLogsResponse__LogBucket *mem = xcalloc((size_t)n_buckets, sizeof(*mem));
	cleanup_free Modal__Client__AppCountLogsResponse__LogBucket **ptrs = xcalloc((size_t)n_buckets, sizeof(*ptrs));
	cleanup_free Google__Protobuf__Timestamp *starts = xcalloc((size_t)n_buckets, sizeof(*starts));
	for (int64_t k = 0; k < n_buckets; k++) {
		Modal__Client__AppCountLogsResponse__LogBucket b = MODAL__CLIENT__APP_COUNT_LOGS_RESPONSE__LOG_BUCKET__INIT;
		Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
		t.seconds = first + k * bs;
		starts[k] = t;
		b.bucket_start_at = &starts[k];
		mem[k] = b;
		ptrs[k] = &mem[k];
	}
	for (size_t i = 0; i < app->n_logs; i++) {
		Modal__Client__TaskLogsBatch *b =
			pb_unpack(&modal__client__task_logs_batch__descriptor, app->logs[i].batch, app->logs[i].len);
		if (b == NULL)
			continue;
		for (size_t j = 0; j < b->n_items; j++) {
			const Modal__Client__TaskLogs *item = b->items[j];
			if (!matches(&f, b, item))
				continue;
			int64_t k = ((int64_t)item->timestamp - first) / bs;
			if (k < 0 || k >= n_buckets)
				continue;
			if (item->file_descriptor == MODAL__CLIENT__FILE_DESCRIPTOR__FILE_DESCRIPTOR_STDERR)
				mem[k].stderr_logs++;
			else if (item->file_descriptor == MODAL__CLIENT__FILE_DESCRIPTOR__FILE_DESCRIPTOR_INFO)
				mem[k].system_logs++;
			else
				mem[k].stdout_logs++;
		}
		pb_free(b);
	}
	Modal__Client__AppCountLogsResponse resp = MODAL__CLIENT__APP_COUNT_LOGS_RESPONSE__INIT;
	resp.app_id = app->id;
	resp.n_buckets = (size_t)n_buckets;
	resp.buckets = ptrs;
	cove_api_reply(req->call, &resp.base);
}
