/* Error message buffer helpers (see error.h). */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int hl_err_set(hl_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
        err->nparts = 0;
    }
    return code;
}

void hl_err_clear(hl_err *err)
{
    if (err) {
        err->code = HL_OK;
        err->msg[0] = '\0';
        err->nparts = 0;
    }
}

static void add_text(char *out, size_t len, size_t *n, const char *s)
{
    for (; s && *s && *n + 1 < len; s++)
        out[(*n)++] = *s;
}

/* An argument as shown: a msgid translated, each item of a list translated, or as it is. */
static void add_arg(char *out, size_t len, size_t *n, const hl_err_part *p, int i,
                    const char *(*tr)(void *, const char *), void *ud)
{
    if (i >= p->nargs)
        return;
    if (p->kinds[i] == 't') {
        add_text(out, len, n, tr ? tr(ud, p->args[i]) : p->args[i]);
    } else if (p->kinds[i] == 'l') {
        char item[128];
        const char *s = p->args[i];
        while (*s) {
            size_t k = strcspn(s, ",");
            snprintf(item, sizeof item, "%.*s", (int)k, s);
            add_text(out, len, n, tr ? tr(ud, item) : item);
            s += k;
            if (*s == ',') {
                add_text(out, len, n, ", ");
                s++;
                while (*s == ' ')
                    s++;
            }
        }
    } else {
        add_text(out, len, n, p->args[i]);
    }
}

/* fmt with each printf directive replaced by the next argument: the catalogs keep a
 * translation's directives in the order of its msgid's (core/i18n.c refuses others). */
static void add_part(char *out, size_t len, size_t *n, const hl_err_part *p, const char *fmt,
                     const char *(*tr)(void *, const char *), void *ud)
{
    int next = 0;
    for (const char *f = fmt; *f && *n + 1 < len; f++) {
        if (*f != '%') {
            out[(*n)++] = *f;
        } else if (f[1] == '%') {
            out[(*n)++] = '%';
            f++;
        } else {
            const char *c = f + 1;
            while (*c && strchr("-+ #0123456789.hlLqjzt", *c))
                c++;
            if (!*c)
                break;
            add_arg(out, len, n, p, next++, tr, ud);
            f = c;
        }
    }
}

const char *hl_err_render(const hl_err *err, const char *(*tr)(void *ud, const char *msgid), void *ud, char *out,
                          size_t len)
{
    if (!out || !len)
        return "";
    if (!err || err->nparts <= 0) {
        snprintf(out, len, "%s", err ? err->msg : "");
        return out;
    }
    size_t n = 0;
    for (int i = 0; i < err->nparts && i < HL_ERR_PARTS; i++) {
        if (i)
            add_text(out, len, &n, " ");
        const hl_err_part *p = &err->parts[i];
        add_part(out, len, &n, p, tr ? tr(ud, p->msgid) : p->msgid, tr, ud);
    }
    out[n < len ? n : len - 1] = '\0';
    return out;
}

static void fill_part(hl_err_part *p, const char *msgid, const char *types, va_list ap)
{
    p->msgid = msgid;
    p->nargs = 0;
    for (const char *t = types ? types : ""; *t && p->nargs < HL_ERR_ARGS; t++) {
        char *a = p->args[p->nargs];
        p->kinds[p->nargs] = *t;
        if (*t == 'd') {
            snprintf(a, sizeof p->args[0], "%d", va_arg(ap, int));
        } else if (*t == 'z') {
            snprintf(a, sizeof p->args[0], "%zu", va_arg(ap, size_t));
        } else {
            const char *s = va_arg(ap, const char *);
            snprintf(a, sizeof p->args[0], "%s", s ? s : "");
        }
        p->nargs++;
    }
}

int hl_err_msg(hl_err *err, int code, const char *msgid, const char *types, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, types);
    fill_part(&err->parts[0], msgid, types, ap);
    va_end(ap);
    err->nparts = 1;
    err->code = code;
    hl_err_render(err, NULL, NULL, err->msg, sizeof err->msg);
    return code;
}

int hl_err_more(hl_err *err, const char *msgid, const char *types, ...)
{
    if (!err)
        return HL_ERR;
    if (err->nparts >= HL_ERR_PARTS || err->nparts < 1)
        return err->code;
    va_list ap;
    va_start(ap, types);
    fill_part(&err->parts[err->nparts], msgid, types, ap);
    va_end(ap);
    err->nparts++;
    hl_err_render(err, NULL, NULL, err->msg, sizeof err->msg);
    return err->code;
}