/* Region allocator: every per-request allocation comes from one arena that is freed in one
 * go when the reply has been sent, so handlers never free piecemeal and cannot leak. */
#ifndef HL_ARENA_H
#define HL_ARENA_H

#include <stdarg.h>
#include <stddef.h>

typedef struct hl_arena hl_arena;

hl_arena *hl_arena_new(size_t block_size);
/* Returns 16-byte aligned memory, or NULL when out of memory or past the arena's cap. */
void *hl_arena_alloc(hl_arena *a, size_t size);
void *hl_arena_calloc(hl_arena *a, size_t n, size_t size);
char *hl_arena_strdup(hl_arena *a, const char *s);
/* Copies len bytes and adds a NUL. */
char *hl_arena_strndup(hl_arena *a, const char *s, size_t len);
char *hl_arena_printf(hl_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *hl_arena_vprintf(hl_arena *a, const char *fmt, va_list ap);
/* Grows an array allocated from the arena (old contents copied; the old block is not reused). */
void *hl_arena_grow(hl_arena *a, void *old, size_t old_size, size_t new_size);
/* Caps the total bytes the arena may hand out (0 = no cap). */
void hl_arena_set_cap(hl_arena *a, size_t cap);
size_t hl_arena_used(const hl_arena *a);
/* Frees every block but the first, which is kept for reuse by the next request. */
void hl_arena_reset(hl_arena *a);
void hl_arena_free(hl_arena *a);

#endif
