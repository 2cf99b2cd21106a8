/* What every libcurl transfer of Cove's sets: http and https only (redirects too), at most 10 redirects, no
 * signals (worker threads), a connect timeout, a stall limit, Cove's User-Agent, and an error buffer. */
#ifndef COVE_UTIL_CURL_H
#define COVE_UTIL_CURL_H

#include <curl/curl.h>

/* errbuf: CURL_ERROR_SIZE bytes, cleared here. */
void cove_curl_defaults(CURL *c, long connect_timeout_s, long stall_time_s, char *errbuf);
/* url as it may be shown (logs, errors, build output): without user name and password. malloc'd. */
char *cove_url_redacted(const char *url);

#endif
