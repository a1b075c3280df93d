/* Logic-less templates: Mustache (https://mustache.github.io/mustache.5.html), so that theme
 * authors already know the syntax and a local group's template can never run code. Passes the
 * official specification (comments, delimiters, interpolation, inverted, partials, sections,
 * ~inheritance for layouts with blocks). {{x}} is HTML-escaped; raw output needs {{{x}}} or
 * {{& x}}. Templates are parsed once into a tree and rendered many times. */
#ifndef HL_MUSTACHE_H
#define HL_MUSTACHE_H

#include <jansson.h>
#include <stddef.h>

#include "core/error.h"

typedef struct hl_tpl hl_tpl;

/* Partials (and parents for {{<layout}}) are resolved through a loader when a template is
 * compiled: it returns the text of the named partial (malloc'd, *len set) or NULL if there is
 * none. name is what the template wrote ("footer", "layouts/base"). */
typedef char *(*hl_tpl_loader)(void *ud, const char *name, size_t *len);

typedef struct hl_tpl_opts {
    hl_tpl_loader loader;      /* NULL: no partials */
    void *loader_ud;
    int strict_partials;       /* 1: a partial the loader cannot find is a compile error
                                * (halle's themes); 0: it renders as empty (the spec) */
    /* Translation tag, halle's extension outside the Mustache spec: {{_ Texte source}} (an
     * underscore, blank space, then the French source text up to the closing delimiter; runs
     * of blanks and newlines in it count as one space) is replaced when the template is
     * compiled by translate(translate_ud, text), or by the text itself when translate is NULL
     * or returns NULL, as literal output, HTML-escaped. A template is thus compiled once per
     * language and translating costs nothing when rendering. Only a variable tag whose name
     * starts with "_" and a blank is such a tag ({{_name}}, {{{_ x}}}, {{& _ x}} are not); the
     * spec cannot have one, since a name with a blank in it is refused. core/i18n.h has a
     * translate function over the .po catalogs. */
    const char *(*translate)(void *ud, const char *msgid);
    void *translate_ud;
} hl_tpl_opts;

/* Compiles text. name (file name) is used in error messages: "NAME:LINE: problem" (unclosed
 * tag or section, mismatched section end, bad delimiter change, missing partial in strict
 * mode, partial recursion deeper than 64). Partials are compiled once and shared. */
hl_tpl *hl_tpl_compile(const char *name, const char *text, size_t len, const hl_tpl_opts *opts, hl_err *err);
void hl_tpl_free(hl_tpl *t);

/* Renders with a JSON context (objects, arrays, strings, numbers, booleans, null). Output is
 * appended to a malloc'd buffer returned in *out (NUL-terminated), length in *out_len. */
int hl_tpl_render(const hl_tpl *t, json_t *context, char **out, size_t *out_len, hl_err *err);

#endif
