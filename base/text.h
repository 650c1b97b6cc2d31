/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Bounded string building without printf, for text both processes build
 * often enough that format parsing shows in profiles (replies and log
 * lines per message, names copied out of the store).
 *
 * Every function keeps snprintf's promise: dst is always terminated and
 * cut, never overrun.  Pure functions over their arguments: any thread.
 */
#ifndef TES_BASE_TEXT_H
#define TES_BASE_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* Decimal digits of any uint64_t. */
#define TES_U64_DIGITS 20

/* The decimal digits of v at d (no terminator); returns how many. */
size_t tes_u64_digits(char d[TES_U64_DIGITS], uint64_t v);

/* snprintf(dst, size, "%s", src) for size > 0; returns the length kept. */
size_t tes_str_copy(char *dst, size_t size, const char *src);

/* Append src at dst[at], where dst holds a terminated string of length at
 * < size; returns the new length (size - 1 when cut). */
size_t tes_str_append(char *dst, size_t size, size_t at, const char *src);

/* The same for the decimal of v. */
size_t tes_str_append_u64(char *dst, size_t size, size_t at, uint64_t v);

#endif
