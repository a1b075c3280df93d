/* Capabilities: the core's rules for its own objects, the registry of the objects plugins
 * register (a rule table per name, and an ownership callback when ownership is the plugin's
 * knowledge), and hl_auth_can, which answers for both. The registry lives in each process,
 * filled by the plugins' init as routes and hooks are. */
#include "core/caps.h"

#include <jansson.h>
#include <string.h>

typedef struct cap {
    char name[64];
    halle_cap_rule rules[HL_CAPS_MAX_RULES];
    size_t nrules;
    hl_caps_owns_fn owns;
    halle_host *host;
    void *ud;
    int used;
} cap;

static cap caps[HL_CAPS_MAX];

/* The market's objects of ABI 1, now its capabilities (include/halle/plugin.h). */
static const char *const deprecated[] = {
    [HALLE_OBJ_GROUP_SETTINGS] = "market.group_settings",
    [HALLE_OBJ_GROUP_MEMBERS] = "market.group_members",
    [HALLE_OBJ_GROUP_ORDERS] = "market.group_orders",
    [HALLE_OBJ_PRODUCER_ACCOUNT] = "market.producer_account",
    [HALLE_OBJ_CATALOG] = "market.catalog",
    [HALLE_OBJ_PRODUCER_ORDERS] = "market.producer_orders",
};

static int valid_name(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    const char *dot = name ? strchr(name, '.') : NULL;
    if (len < 3 || len >= sizeof caps[0].name || !dot || dot == name || !dot[1])
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

static int valid_rule(const halle_cap_rule *r)
{
    int one_role = r->role == 0 || r->role == HL_ROLE_CLIENT || r->role == HL_ROLE_PRODUCER ||
                   r->role == HL_ROLE_COORDINATOR || r->role == HL_ROLE_OPERATOR;
    return one_role && r->scope <= HALLE_SCOPE_OWNER && (r->actions & ~(unsigned)HALLE_CAN_ALL) == 0;
}

int hl_caps_find(const char *name)
{
    if (!name)
        return 0;
    for (int i = 0; i < HL_CAPS_MAX; i++)
        if (caps[i].used && strcmp(caps[i].name, name) == 0)
            return HALLE_CAP_FIRST + i;
    return 0;
}

int hl_caps_register(const char *name, const halle_cap_rule *rules, size_t nrules, hl_caps_owns_fn owns,
                     halle_host *h, void *ud, hl_err *err)
{
    if (!valid_name(name))
        return hl_err_set(err, HL_EINVAL, "capability name must be PLUGIN.word in [a-z0-9_.]: %s",
                          name ? name : "(null)");
    if (nrules > HL_CAPS_MAX_RULES || (nrules && !rules))
        return hl_err_set(err, HL_EINVAL, "capability %s: at most %d rules", name, HL_CAPS_MAX_RULES);
    for (size_t i = 0; i < nrules; i++)
        if (!valid_rule(&rules[i]))
            return hl_err_set(err, HL_EINVAL, "capability %s: rule %zu has an unknown role, scope or action",
                              name, i + 1);
    int id = hl_caps_find(name);
    int slot = id ? id - HALLE_CAP_FIRST : -1;
    if (slot >= 0 && caps[slot].host != h)
        return hl_err_set(err, HL_EINVAL, "capability %s is already registered by another plugin", name);
    for (int i = 0; slot < 0 && i < HL_CAPS_MAX; i++)
        if (!caps[i].used)
            slot = i;
    if (slot < 0)
        return hl_err_set(err, HL_ERR, "too many capabilities (%d)", HL_CAPS_MAX);
    cap *c = &caps[slot];
    memset(c, 0, sizeof *c);
    strcpy(c->name, name);
    if (nrules)
        memcpy(c->rules, rules, nrules * sizeof *rules);
    c->nrules = nrules;
    c->owns = owns;
    c->host = h;
    c->ud = ud;
    c->used = 1;
    return HALLE_CAP_FIRST + slot;
}

void hl_caps_forget(const halle_host *h)
{
    for (int i = 0; i < HL_CAPS_MAX; i++)
        if (caps[i].used && (!h || caps[i].host == h))
            memset(&caps[i], 0, sizeof caps[i]);
}

json_t *hl_caps_list(void)
{
    json_t *out = json_array();
    for (int i = 0; out && i < HL_CAPS_MAX; i++) {
        if (!caps[i].used)
            continue;
        json_t *rules = json_array();
        for (size_t k = 0; rules && k < caps[i].nrules; k++)
            json_array_append_new(rules, json_pack("{s:i, s:i, s:i}", "role", (int)caps[i].rules[k].role, "scope",
                                                   (int)caps[i].rules[k].scope, "actions",
                                                   (int)caps[i].rules[k].actions));
        json_array_append_new(out, json_pack("{s:i, s:s, s:o}", "id", HALLE_CAP_FIRST + i, "name", caps[i].name,
                                             "rules", rules ? rules : json_array()));
    }
    return out;
}

/* Does the user hold role in group (a scoped role)? */
static int holds_in(const hl_user *u, unsigned role, int64_t group)
{
    if (!(u->roles & role) || group <= 0)
        return 0;
    for (size_t i = 0; i < u->nscopes && i < HL_MAX_SCOPES; i++)
        if (u->scopes[i].role == role && u->scopes[i].group == group)
            return 1;
    return 0;
}

static unsigned cap_allowed(const cap *c, const hl_user *u, int64_t owner)
{
    unsigned mask = 0;
    int owned = -1;   /* asked once, when a rule needs it */
    for (size_t i = 0; i < c->nrules; i++) {
        const halle_cap_rule *r = &c->rules[i];
        if ((r->actions & ~mask) == 0)
            continue;
        if (r->role && !(u->roles & r->role))
            continue;
        int ok = 0;
        switch (r->scope) {
        case HALLE_SCOPE_ANY:
            ok = 1;
            break;
        case HALLE_SCOPE_GROUP:
            ok = r->role ? holds_in(u, r->role, owner) : 0;
            break;
        case HALLE_SCOPE_OWNER:
            if (owned < 0)
                owned = c->owns ? c->owns(c->host, u->id, owner, c->ud) == 1 : owner > 0 && owner == u->id;
            ok = owned;
            break;
        }
        if (ok)
            mask |= r->actions;
    }
    return mask;
}

/* The core's own objects. Operators run the platform; nobody acts on someone else's account. */
static unsigned core_allowed(const hl_user *u, int object, int64_t owner)
{
    int op = (u->roles & HL_ROLE_OPERATOR) != 0;
    switch (object) {
    case HL_OBJ_OPERATOR_PAGES:
        return op ? HALLE_CAN_ALL : 0;
    case HL_OBJ_USER_ACCOUNT:
        return owner == u->id ? HALLE_CAN_ALL : op ? HALLE_CAN(HL_ACT_VIEW) : 0;
    case HL_OBJ_USER_LOCKS:
        return op ? HALLE_CAN(HL_ACT_EDIT) : 0;
    }
    return 0;
}

int hl_auth_can(const hl_user *user, hl_action action, int object, int64_t owner)
{
    if (!user || user->deleted || user->id <= 0)
        return 0;
    if (action < HL_ACT_VIEW || action > HL_ACT_DELETE)
        return 0;
    if (object >= HALLE_OBJ_GROUP_SETTINGS && object <= HALLE_OBJ_PRODUCER_ORDERS)
        object = hl_caps_find(deprecated[object]);
    unsigned mask;
    if (object >= HALLE_CAP_FIRST && object < HALLE_CAP_FIRST + HL_CAPS_MAX && caps[object - HALLE_CAP_FIRST].used)
        mask = cap_allowed(&caps[object - HALLE_CAP_FIRST], user, owner);
    else
        mask = core_allowed(user, object, owner);
    return (mask & HALLE_CAN(action)) != 0;
}

int hl_auth_can_name(const hl_user *user, hl_action action, const char *name, int64_t owner)
{
    static const struct {
        const char *name;
        hl_object object;
    } core[] = {{"operator_pages", HL_OBJ_OPERATOR_PAGES}, {"user_account", HL_OBJ_USER_ACCOUNT},
                {"user_locks", HL_OBJ_USER_LOCKS}};
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof core / sizeof core[0]; i++)
        if (strcmp(name, core[i].name) == 0)
            return hl_auth_can(user, action, (int)core[i].object, owner);
    int id = hl_caps_find(name);
    return id ? hl_auth_can(user, action, id, owner) : 0;
}
