#include "util/pb.h"

#include "util/alloc.h"

static void *
alloc_fn(void *data, size_t size)
{
	(void)data;
	return xmalloc(size);
}

static void
free_fn(void *data, void *p)
{
	(void)data;
	free(p);
}

ProtobufCAllocator cove_pb_allocator = {alloc_fn, free_fn, NULL};

uint8_t *
pb_pack(const ProtobufCMessage *m, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = xmalloc(n);
	protobuf_c_message_pack(m, buf);
	*len = n;
	return buf;
}

void *
pb_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len)
{
	return protobuf_c_message_unpack(d, &cove_pb_allocator, len, data);
}

void *
pb_dup(const ProtobufCMessage *m)
{
	size_t len;
	uint8_t *buf = pb_pack(m, &len);
	void *copy = pb_unpack(m->descriptor, buf, len);
	free(buf);
	if (copy == NULL)
		abort(); /* what we packed ourselves always parses */
	return copy;
}

void
pb_free(void *m)
{
	if (m)
		protobuf_c_message_free_unpacked(m, &cove_pb_allocator);
}
