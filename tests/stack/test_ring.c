/* SPDX-License-Identifier: BSD-3-Clause */
/* The byte ring under every connection's send and receive buffer
 * (dataplane/stack/stack.c: stack_ring_write_at, _read_at, _drop) against
 * a model: the stream as a flat array indexed from the ring's head.  Every
 * capacity from 1 to 70 bytes, every starting head, seeded random writes
 * in order and beyond a hole (out-of-order data), reads anywhere, drops
 * larger than what is held; then bytes past the ring are checked intact. */
#include <stdio.h>
#include <stdlib.h>

#include "dataplane/stack/stack_impl.h"

#define CAP_MAX 70
#define GUARD 8
#define OPS 400

static int fails;

static void fail(const char *what, uint32_t cap, uint32_t head0, int op, uint32_t a, uint32_t b,
		 uint32_t c)
{
	if (fails++ < 10)
		fprintf(stderr, "FAIL %s: cap %u first head %u op %d: %u %u %u\n", what, cap, head0,
			op, a, b, c);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? (uint32_t)(rng % n) : 0;
}

/* What the ring should hold, from its head: data[i] is known when known[i]
 * (in-order bytes below len, out-of-order ones above it). */
struct model {
	uint8_t data[CAP_MAX];
	bool known[CAP_MAX];
};

static void run(uint32_t cap, uint32_t head0)
{
	uint8_t *mem = malloc(cap + GUARD);
	if (!mem)
		abort();
	memset(mem, 0xa5, cap + GUARD);
	struct ring r = { .base = mem, .cap = cap, .head = head0, .len = 0 };
	struct model m;
	memset(&m, 0, sizeof(m));
	uint8_t src[CAP_MAX + 8], out[CAP_MAX];
	static uint8_t next = 1;

	for (int op = 0; op < OPS; op++) {
		uint32_t kind = rnd(4);
		if (kind == 0 || kind == 1) {
			/* kind 0 in order at len; kind 1 beyond a hole, now and
			 * then past the end of the ring */
			uint32_t off = kind == 0 ? r.len : r.len + 1 + rnd(cap + 2 - r.len);
			uint32_t n = rnd(cap + 4);
			for (uint32_t i = 0; i < n; i++)
				src[i] = next++;
			uint32_t want = off >= cap ? 0 : (n < cap - off ? n : cap - off);
			uint32_t got = stack_ring_write_at(&r, off, src, n);
			if (got != want)
				fail("write count", cap, head0, op, off, n, got);
			for (uint32_t i = 0; i < want; i++) {
				m.data[off + i] = src[i];
				m.known[off + i] = true;
			}
			if (kind == 0)
				r.len += got; /* the caller's part, as tcp_in does */
		} else if (kind == 2) {
			uint32_t off = rnd(cap), n = rnd(cap - off + 1);
			stack_ring_read_at(&r, off, out, n);
			for (uint32_t i = 0; i < n; i++)
				if (m.known[off + i] && out[i] != m.data[off + i])
					fail("read", cap, head0, op, off, n, i);
		} else {
			uint32_t n = rnd(cap + 3), len0 = r.len, head = r.head;
			uint32_t d = n < len0 ? n : len0;
			stack_ring_drop(&r, n);
			if (r.len != len0 - d || r.head != (head + d) % cap)
				fail("drop", cap, head0, op, n, r.len, r.head);
			/* What lay beyond len keeps its place relative to the
			 * stream: the head moves, it does not reset. */
			memmove(m.data, m.data + d, cap - d);
			memmove(m.known, m.known + d, cap - d);
			memset(m.known + cap - d, 0, d);
		}
		if (r.head >= cap || r.len > cap)
			fail("bounds", cap, head0, op, r.head, r.len, 0);
	}
	for (uint32_t i = 0; i < GUARD; i++)
		if (mem[cap + i] != 0xa5)
			fail("write past the ring", cap, head0, -1, i, mem[cap + i], 0);
	free(mem);
}

int main(void)
{
	for (uint32_t cap = 1; cap <= CAP_MAX; cap++)
		for (uint32_t head = 0; head < cap; head++)
			run(cap, head);

	/* The case the head's rule is for: the ring empties while data
	 * beyond a hole waits; that data must still be where the stream
	 * puts it. */
	uint8_t mem[16], out[3];
	struct ring r = { .base = mem, .cap = 16, .head = 10, .len = 0 };
	stack_ring_write_at(&r, 0, (const uint8_t *)"abcd", 4);
	r.len = 4;
	stack_ring_write_at(&r, 7, (const uint8_t *)"xyz", 3);
	stack_ring_drop(&r, 4);
	stack_ring_read_at(&r, 3, out, 3);
	if (r.len != 0 || memcmp(out, "xyz", 3) != 0)
		fail("hole after emptying", 16, 10, -1, r.len, out[0], 0);

	if (fails) {
		fprintf(stderr, "%d ring mismatches\n", fails);
		return 1;
	}
	printf("the ring agrees with the model\n");
	return 0;
}
