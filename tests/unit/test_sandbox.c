/* The sandbox module's pure parts: router tokens (jwt.c), output streams without readers (stream.c), and the
 * filesystem helper's command parser (json.c, fs_command.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sandbox/fs_command.h"
#include "sandbox/jwt.h"
#include "sandbox/stream.h"

#define NOW 1795794420LL

/* ---- tokens ---- */

static void
test_jwt_round_trip(void **state)
{
	(void)state;
	uint8_t key[COVE_JWT_KEY_BYTES];
	cove_jwt_key_new(key);
	char *t = cove_jwt_issue(key, "ta-ABC123V", "tcr", NOW, 900);
	char sub[64];
	struct cove_error *err = NULL;
	assert_int_equal(cove_jwt_verify(key, t, "tcr", NOW + 899, sub, sizeof(sub), &err), 0);
	assert_string_equal(sub, "ta-ABC123V");
	/* Three base64url parts, as the client splits them to read exp. */
	int dots = 0;
	for (char *p = t; *p; p++)
		dots += *p == '.';
	assert_int_equal(dots, 2);
	free(t);
}

static void
expect_refused(const uint8_t *key, const char *token, const char *aud, int64_t now)
{
	char sub[64];
	struct cove_error *err = NULL;
	assert_int_equal(cove_jwt_verify(key, token, aud, now, sub, sizeof(sub), &err), -1);
	assert_non_null(err);
	assert_int_equal(err->code, COVE_UNAUTHENTICATED);
	cove_error_free(err);
}

static void
test_jwt_refusals(void **state)
{
	(void)state;
	uint8_t key[COVE_JWT_KEY_BYTES], other[COVE_JWT_KEY_BYTES];
	cove_jwt_key_new(key);
	cove_jwt_key_new(other);
	char *t = cove_jwt_issue(key, "ta-x", "tcr", NOW, 60);
	expect_refused(key, t, "tcr", NOW + 60);   /* expired */
	expect_refused(key, t, "auth", NOW);       /* another audience */
	expect_refused(other, t, "tcr", NOW);      /* another server's key */
	/* A changed payload (the subject) no longer matches its signature. */
	char *dot = strchr(t, '.');
	char *copy = strdup(t);
	copy[dot - t + 5] = copy[dot - t + 5] == 'A' ? 'B' : 'A';
	expect_refused(key, copy, "tcr", NOW);
	free(copy);
	expect_refused(key, "", "tcr", NOW);
	expect_refused(key, "a.b", "tcr", NOW);
	expect_refused(key, "a.b.c.d", "tcr", NOW);
	expect_refused(key, "a.b.!!!", "tcr", NOW);
	expect_refused(key, NULL, "tcr", NOW);
	/* The signature alone, cut short. */
	char *shortsig = strdup(t);
	shortsig[strlen(shortsig) - 3] = '\0';
	expect_refused(key, shortsig, "tcr", NOW);
	free(shortsig);
	free(t);
}

/* ---- streams ---- */

static int reading_calls, last_reading = 1;

static void
on_reading(void *arg, int reading)
{
	(void)arg;
	reading_calls++;
	last_reading = reading;
}

static void
test_stream_ring_keeps_the_newest(void **state)
{
	(void)state;
	struct cove_stream s;
	cove_stream_init(&s, NULL, COVE_STREAM_RING, 10, NULL, NULL);
	cove_stream_append(&s, "0123456789", 10);
	cove_stream_append(&s, "abcde", 5);
	assert_int_equal(cove_stream_end_offset(&s), 15);
	assert_int_equal(s.base, 5);
	assert_int_equal(s.len, 10);
	assert_memory_equal(s.buf + s.head, "56789abcde", 10);
	cove_stream_close(&s);
	cove_stream_append(&s, "late", 4); /* after the end: ignored */
	assert_int_equal(cove_stream_end_offset(&s), 15);
	cove_stream_release(&s, 0, NULL);
}

static void
test_stream_discard_counts_only(void **state)
{
	(void)state;
	struct cove_stream s;
	cove_stream_init(&s, NULL, COVE_STREAM_DISCARD, 0, NULL, NULL);
	cove_stream_append(&s, "abc", 3);
	assert_int_equal(cove_stream_end_offset(&s), 3);
	assert_int_equal(s.len, 0);
	cove_stream_release(&s, 0, NULL);
}

static void
test_stream_flow_holds_an_unread_producer(void **state)
{
	(void)state;
	struct cove_stream s;
	reading_calls = 0;
	last_reading = 1;
	cove_stream_init(&s, NULL, COVE_STREAM_FLOW, 0, on_reading, NULL);
	static char chunk[1 << 20];
	memset(chunk, 'x', sizeof(chunk));
	/* Up to COVE_STREAM_UNREAD bytes wait for a reader still to come, every one of them kept. */
	for (size_t i = 0; i < COVE_STREAM_UNREAD / sizeof(chunk); i++)
		cove_stream_append(&s, chunk, sizeof(chunk));
	assert_int_equal(reading_calls, 0);
	assert_int_equal(s.len, COVE_STREAM_UNREAD);
	cove_stream_append(&s, chunk, 1);
	assert_int_equal(reading_calls, 1);
	assert_int_equal(last_reading, 0);
	/* The end resumes the producer (so its exit can be reported) and keeps the bytes for a reader. */
	cove_stream_close(&s);
	assert_int_equal(last_reading, 1);
	assert_int_equal(s.len, COVE_STREAM_UNREAD + 1);
	cove_stream_release(&s, 0, NULL);
}

/* ---- the filesystem helper's commands ---- */

static int
parse(const char *text, struct fs_command *c, struct json_doc **doc, char *err)
{
	return fs_command_parse(text, strlen(text), doc, c, err, 256);
}

static void
test_fs_commands(void **state)
{
	(void)state;
	struct fs_command c;
	struct json_doc *doc = NULL;
	char err[256];
	assert_int_equal(parse("{\"ReadFile\": {\"path\": \"/tmp/a \\u00e9\\ud83d\\ude00\"}}", &c, &doc, err), 0);
	assert_int_equal(c.op, FS_READ);
	assert_string_equal(c.path, "/tmp/a \xc3\xa9\xf0\x9f\x98\x80");
	json_free(doc);
	assert_int_equal(parse("{\"MakeDirectory\":{\"path\":\"/a\"}}", &c, &doc, err), 0);
	assert_int_equal(c.op, FS_MKDIR);
	assert_int_equal(c.flag, 1); /* parents defaults to true */
	json_free(doc);
	assert_int_equal(parse("{\"Remove\":{\"path\":\"/a\",\"recursive\":true}}", &c, &doc, err), 0);
	assert_int_equal(c.flag, 1);
	json_free(doc);
	assert_int_equal(
		parse("{\"Watch\":{\"path\":\"/a\",\"recursive\":false,\"filter\":[\"Create\",\"Rename\"],\"timeout_secs\":5}}",
		      &c, &doc, err),
		0);
	assert_int_equal(c.op, FS_WATCH);
	assert_int_equal(c.filter, FS_EV_CREATE | FS_EV_RENAME);
	assert_true(c.timeout_s == 5.0);
	json_free(doc);
	assert_int_equal(parse("{\"Watch\":{\"path\":\"/a\",\"filter\":null,\"timeout_secs\":null}}", &c, &doc, err), 0);
	assert_int_equal(c.filter, FS_EV_ALL);
	assert_true(c.timeout_s < 0);
	json_free(doc);
	const char *bad[] = {
		"", "{}", "[]", "{\"ReadFile\":{}}", "{\"ReadFile\":{\"path\":\"relative\"}}", "{\"Nope\":{\"path\":\"/\"}}",
		"{\"ReadFile\":{\"path\":\"/a\"},\"Stat\":{\"path\":\"/b\"}}", "{\"ReadFile\":{\"path\":\"/a\\u0000b\"}}",
		"{\"ReadFile\":{\"path\":\"/a\\ud800\"}}", "{\"Remove\":{\"path\":\"/a\",\"recursive\":1}}",
		"{\"Watch\":{\"path\":\"/a\",\"filter\":[\"Explode\"]}}", "{\"ReadFile\":{\"path\":\"/a\"}} x",
		"{\"ReadFile\":{\"path\":\"/a\xff\"}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(parse(bad[i], &c, &doc, err), -1);
		assert_true(err[0] != '\0');
		json_free(doc);
		doc = NULL;
	}
	/* Nesting beyond the limit is refused, not recursed into. */
	char deep[512];
	size_t n = 0;
	for (int i = 0; i < 100; i++)
		deep[n++] = '[';
	deep[n] = '\0';
	assert_null(json_parse(deep, n, err, sizeof(err)));
}

static void
test_json_write_string(void **state)
{
	(void)state;
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	json_write_string(f, "a\"b\\c\n\x01\xff\xc3\xa9");
	fclose(f);
	assert_string_equal(out, "\"a\\\"b\\\\c\\u000a\\u0001\xef\xbf\xbd\xc3\xa9\"");
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jwt_round_trip),
		cmocka_unit_test(test_jwt_refusals),
		cmocka_unit_test(test_stream_ring_keeps_the_newest),
		cmocka_unit_test(test_stream_discard_counts_only),
		cmocka_unit_test(test_stream_flow_holds_an_unread_producer),
		cmocka_unit_test(test_fs_commands),
		cmocka_unit_test(test_json_write_string),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
