/* Text helpers the core and plugins share (through the SDK, C and Lua): validation of what
 * people type, accent folding for search and sorting, LIKE patterns over folded columns and
 * pagination. One copy of each, so that what is stored and what is searched always agree. */
#ifndef HL_TEXT_H
#define HL_TEXT_H

#include <jansson.h>
#include <stddef.h>

/* The number of characters of s when it is valid UTF-8 of at most max_bytes bytes without
 * control characters (newlines and tabs allowed when multiline); -1 otherwise (also for NULL). */
long hl_text_chars(const char *s, size_t max_bytes, int multiline);
/* Search and sort key: lower case, the accents of Latin letters removed ("Épeautre" ->
 * "epeautre", "Œuf" -> "oeuf"), blanks (also no-break spaces) trimmed and squeezed to one
 * space; other characters kept. Cut on a character boundary to fit out; returns its length. */
size_t hl_text_fold(const char *in, char *out, size_t len);
/* "%" q "%" with '\', '%' and '_' escaped, for `LIKE ? ESCAPE '\'`: q matches literally. q is
 * folded first (hl_text_fold), so compare it with a folded column. "" for an empty q (no
 * filter). Returns 0, or -1 (out "") when it does not fit. */
int hl_text_like(const char *q, char *out, size_t len);
/* Pagination of total rows, limit a page, on 1-based page (clamped to 1..pages):
 * {page, pages, total, limit, offset, prev?, next?, links: [{page, url, current}]} where url
 * is base with page=N added to its query (at most 9 links around page). NULL when out of
 * memory or limit < 1. New reference. */
json_t *hl_text_paginate(long page, long limit, long long total, const char *base);

#endif
