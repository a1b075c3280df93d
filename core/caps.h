/* Capabilities: the one function that decides every permission (hl_auth_can). The core rules
 * its own objects (operator pages, user accounts, locks); plugins register theirs by name
 * ("market.catalog") with a rule table and, where ownership is their knowledge, a callback. */
#ifndef HL_CAPS_H
#define HL_CAPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/accounts.h"
#include "core/error.h"
#include "include/halle/plugin.h"

#define HL_CAPS_MAX 128
#define HL_CAPS_MAX_RULES 16

/* Who owns object? 1 if user_id does, 0 if not (errors count as not). */
typedef int (*hl_caps_owns_fn)(halle_host *h, int64_t user_id, int64_t object, void *ud);

/* Registers (or replaces, same name) a capability in this process; returns its id
 * (>= HALLE_CAP_FIRST) or a negative error. name is "PREFIX.word" in [a-z0-9_.]; rules are
 * copied; owns may be NULL (then a user owns the object whose id is theirs). */
int hl_caps_register(const char *name, const halle_cap_rule *rules, size_t nrules, hl_caps_owns_fn owns,
                     halle_host *h, void *ud, hl_err *err);
/* The id of a registered capability, or 0. */
int hl_caps_find(const char *name);
/* Forgets every capability registered by h (NULL: all of them). */
void hl_caps_forget(const halle_host *h);
/* The registered capabilities as [{id, name, rules: [{role, scope, actions}]}] (new reference). */
json_t *hl_caps_list(void);

/* May user (NULL = anonymous visitor) do action on the object (a user, group or plugin object
 * id)? object is one of the core's hl_object, a capability id, or (deprecated, ABI 1) one of
 * the market's old HL_OBJ_* numbers, answered by the capability registered under its name. */
int hl_auth_can(const hl_user *user, hl_action action, int object, int64_t owner);
/* The same with a capability's name, or a core object's ("operator_pages", "user_account",
 * "user_locks"). Unknown names are refused. */
int hl_auth_can_name(const hl_user *user, hl_action action, const char *name, int64_t owner);

#endif
