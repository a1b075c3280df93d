/* Region allocator for per-request memory (see arena.h). Blocks are chained; big requests
 * get a block of their own so that one large upload does not waste a default-sized block. */
#include "core/arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 16u

typedef struct block {
    struct block *next;
    size_t size; /* usable bytes in data[] */
    size_t used;
    _Alignas(16) unsigned char data[];
} block;

struct hl_arena {
    block *head;
    size_t block_size;
    size_t total;
    size_t cap;
};

static block *block_new(size_t size)
{
    block *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

hl_arena *hl_arena_new(size_t block_size)
{
    hl_arena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->block_size = block_size ? block_size : 8192;
    a->head = block_new(a->block_size);
    if (!a->head) {
        free(a);
        return NULL;
    }
    return a;
}

void hl_arena_set_cap(hl_arena *a, size_t cap) { a->cap = cap; }
size_t hl_arena_used(const hl_arena *a) { return a->total; }

void *hl_arena_alloc(hl_arena *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (size > SIZE_MAX - ALIGN)
        return NULL;
    size_t need = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (a->cap && (need > a->cap || a->total > a->cap - need))
        return NULL;
    if (!a->head && !(a->head = block_new(a->block_size)))
        return NULL;
    block *b = a->head;
    if (b->size - b->used < need) {
        if (need > a->block_size / 4) {
            /* Large allocation: own block, linked behind the head so the head keeps serving
             * small allocations. */
            block *big = block_new(need);
            if (!big)
                return NULL;
            big->used = need;
            big->next = b->next;
            b->next = big;
            a->total += need;
            return big->data;
        }
        block *nb = block_new(a->block_size);
        if (!nb)
            return NULL;
        nb->next = b;
        a->head = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->total += need;
    return p;
}

void *hl_arena_calloc(hl_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = hl_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *hl_arena_strndup(hl_arena *a, const char *s, size_t len)
{
    char *p = hl_arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *hl_arena_strdup(hl_arena *a, const char *s)
{
    return s ? hl_arena_strndup(a, s, strlen(s)) : NULL;
}

char *hl_arena_vprintf(hl_arena *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *p = hl_arena_alloc(a, (size_t)n + 1);
    if (p)
        vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *hl_arena_printf(hl_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = hl_arena_vprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

void *hl_arena_grow(hl_arena *a, void *old, size_t old_size, size_t new_size)
{
    if (new_size <= old_size)
        return old;
    void *p = hl_arena_alloc(a, new_size);
    if (p && old && old_size)
        memcpy(p, old, old_size);
    return p;
}

void hl_arena_reset(hl_arena *a)
{
    /* Keep one default-sized block for the next request; return the rest to malloc. */
    block *b = a->head, *keep = NULL;
    while (b) {
        block *next = b->next;
        if (!keep && b->size == a->block_size)
            keep = b;
        else
            free(b);
        b = next;
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
    }
    a->head = keep;
    a->total = 0;
}

void hl_arena_free(hl_arena *a)
{
    if (!a)
        return;
    block *b = a->head;
    while (b) {
        block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}
