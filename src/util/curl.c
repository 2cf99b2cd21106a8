/* Cove's libcurl defaults (see curl.h). */
#include "util/curl.h"

#include "config.h"
#include "util/alloc.h"

void
cove_curl_defaults(CURL *c, long connect_timeout_s, long stall_time_s, char *errbuf)
{
	errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, connect_timeout_s);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall_time_s);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "cove/" COVE_VERSION);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
}

char *
cove_url_redacted(const char *url)
{
	CURLU *u = curl_url();
	char *out = NULL;
	if (u && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_USER, NULL, 0) == CURLUE_OK && curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK)
		curl_url_get(u, CURLUPART_URL, &out, 0);
	char *r = xstrdup(out ? out : "(a URL that does not parse)");
	curl_free(out);
	curl_url_cleanup(u);
	return r;
}
