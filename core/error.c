/* Error message buffer helpers (see error.h). */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

int hl_err_set(hl_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void hl_err_clear(hl_err *err)
{
    if (err) {
        err->code = HL_OK;
        err->msg[0] = '\0';
    }
}
