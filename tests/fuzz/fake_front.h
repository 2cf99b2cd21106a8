#ifndef COVE_FUZZ_FAKE_FRONT_H
#define COVE_FUZZ_FAKE_FRONT_H

#include <stddef.h>

struct cove_call;
/* A call for path with headers {name, value, ..., NULL} (borrowed for the call's life). */
struct cove_call *fake_front_call(const char *path, const char *const *headers);
/* Cancel every call still open (as a client hanging up would). */
void fake_front_cancel_all(void);
size_t fake_front_finished(void);

#endif
