/* Server log lines on stderr: "cove: <level>: message". */
#ifndef COVE_UTIL_LOG_H
#define COVE_UTIL_LOG_H

enum cove_log_level { COVE_LOG_DEBUG, COVE_LOG_INFO, COVE_LOG_WARN, COVE_LOG_ERROR };

extern int cove_log_min_level;
void cove_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) cove_log(COVE_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) cove_log(COVE_LOG_INFO, __VA_ARGS__)
#define log_warn(...) cove_log(COVE_LOG_WARN, __VA_ARGS__)
#define log_error(...) cove_log(COVE_LOG_ERROR, __VA_ARGS__)

#endif
