/* The account and operator pages (sign-up, login, password reset, account, admin). */
#ifndef HL_ACCOUNT_PAGES_H
#define HL_ACCOUNT_PAGES_H

#include "core/error.h"

struct hl_worker;
int hl_account_pages_register(struct hl_worker *w, hl_err *err);

#endif
