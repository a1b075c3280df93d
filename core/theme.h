/* Themes: themes/NAME/ folders with a manifest (theme.conf: name, version, parent), templates/,
 * partials/ and static/. A template or partial is looked up along a chain — the local group's
 * theme, the site theme, their parents, then themes/default — so a theme overrides any file
 * and inherits the rest. Templates are compiled once (core/mustache.c) and kept; in
 * development mode a changed file is recompiled on its next use. */
#ifndef HL_THEME_H
#define HL_THEME_H

#include <jansson.h>
#include <stddef.h>

#include "core/error.h"
#include "core/mustache.h"

typedef struct hl_themes hl_themes;

typedef struct hl_theme_info {
    const char *name;
    const char *version;
    const char *parent;       /* NULL for default (and for a theme whose parent is default) */
    const char *description;
} hl_theme_info;

/* Reads every theme under root (SHARE/themes). A theme with a bad manifest (unknown key,
 * missing name, name different from its folder, unknown parent, parent cycle) is an error naming
 * the file and line. themes/default must exist. dev_mode: recompile changed files. */
hl_themes *hl_themes_load(const char *root, int dev_mode, hl_err *err);
void hl_themes_free(hl_themes *t);

size_t hl_themes_count(const hl_themes *t);
const hl_theme_info *hl_themes_get(const hl_themes *t, size_t i);
const hl_theme_info *hl_themes_find(const hl_themes *t, const char *name);

/* The lookup chain for a page: group theme (may be NULL), site theme, their parents, default;
 * each theme once. Writes up to max names into out; returns the count. Unknown names are
 * skipped. */
size_t hl_themes_chain(const hl_themes *t, const char *group_theme, const char *site_theme,
                       const char **out, size_t max);

/* The compiled template `name` (e.g. "home", "error", "account/login") looked up along the
 * chain as CHAIN[i]/templates/NAME.mustache; its partials ({{> footer}}) and parents ({{< layout}})
 * are looked up along the same chain as partials/NAME.mustache, then templates/NAME.mustache.
 * Missing partials are errors (strict). Compiled once per (chain, name) and cached; the cache
 * owns the result. NULL with "NAME: no such template in themes a, b, default" or the compile
 * error (file and line). */
const hl_tpl *hl_themes_template(hl_themes *t, const char *const *chain, size_t n, const char *name,
                                 hl_err *err);

/* Translations for {{_ text}} tags (core/i18n.h); set once at start-up. */
struct hl_i18n;
void hl_themes_set_i18n(hl_themes *t, const struct hl_i18n *i18n);
/* As hl_themes_template, compiled for a language (its own cache entry); lang NULL = the
 * French source text. */
const hl_tpl *hl_themes_template_lang(hl_themes *t, const char *const *chain, size_t n, const char *name,
                                      const char *lang, hl_err *err);
int hl_themes_render_lang(hl_themes *t, const char *const *chain, size_t n, const char *name, const char *lang,
                          json_t *context, char **out, size_t *out_len, hl_err *err);

/* Convenience: finds and renders; *out is malloc'd. */
int hl_themes_render(hl_themes *t, const char *const *chain, size_t n, const char *name, json_t *context,
                     char **out, size_t *out_len, hl_err *err);

/* The file to serve for static path rel along the chain (for the static table). Returns the
 * absolute path (malloc'd) or NULL. */
char *hl_themes_static_path(const hl_themes *t, const char *const *chain, size_t n, const char *rel);

#endif
