/* protobuf-c helpers on the aborting allocator. A message built by hand (pointers into other messages)
 * becomes an owned deep copy with pb_dup; every owned message is freed with pb_free. */
#ifndef COVE_UTIL_PB_H
#define COVE_UTIL_PB_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

extern ProtobufCAllocator cove_pb_allocator;

/* Serialize (malloc'd; *len set). */
uint8_t *pb_pack(const ProtobufCMessage *m, size_t *len);
/* Parse; NULL if the bytes are not a valid message of that type. */
void *pb_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len);
/* Owned deep copy (pack + unpack). */
void *pb_dup(const ProtobufCMessage *m);
void pb_free(void *m);

#endif
