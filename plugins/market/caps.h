/* The market's objects as capabilities the core's can() answers for: who may view, edit,
 * create or delete a group's settings, members and orders, a producer account, a catalog,
 * a producer's orders. Registered at init; the unit test of the authorisation matrix reads
 * the same table. */
#ifndef MARKET_CAPS_H
#define MARKET_CAPS_H

#include "include/halle/plugin.h"

#define MK_VE (HALLE_CAN(HALLE_ACT_VIEW) | HALLE_CAN(HALLE_ACT_EDIT))

typedef struct mk_cap {
    const char *name;
    halle_cap_rule rules[3];
    size_t nrules;
} mk_cap;

/* Operators run the platform (group pages included) but do not act for producers, whose
 * catalogs and orders are theirs alone; coordinators act only on the groups they coordinate;
 * a producer account is created only by its owner; catalogs are public. The object passed to
 * can() is the group's id for group objects, the owning user's id for the others. */
static const mk_cap mk_caps[] = {
    {"market.group_settings",
     {{HALLE_ROLE_OPERATOR, HALLE_SCOPE_ANY, MK_VE}, {HALLE_ROLE_COORDINATOR, HALLE_SCOPE_GROUP, MK_VE}}, 2},
    {"market.group_members",
     {{HALLE_ROLE_OPERATOR, HALLE_SCOPE_ANY, MK_VE}, {HALLE_ROLE_COORDINATOR, HALLE_SCOPE_GROUP, HALLE_CAN_ALL}}, 2},
    {"market.group_orders",
     {{HALLE_ROLE_OPERATOR, HALLE_SCOPE_ANY, MK_VE}, {HALLE_ROLE_COORDINATOR, HALLE_SCOPE_GROUP, MK_VE}}, 2},
    {"market.producer_account", {{0, HALLE_SCOPE_OWNER, HALLE_CAN_ALL}}, 1},
    {"market.catalog",
     {{HALLE_ROLE_PRODUCER, HALLE_SCOPE_OWNER, HALLE_CAN_ALL}, {0, HALLE_SCOPE_ANY, HALLE_CAN(HALLE_ACT_VIEW)}}, 2},
    {"market.producer_orders",
     {{HALLE_ROLE_PRODUCER, HALLE_SCOPE_OWNER, HALLE_CAN_ALL}, {HALLE_ROLE_OPERATOR, HALLE_SCOPE_ANY, HALLE_CAN(HALLE_ACT_VIEW)}},
     2},
};

#endif
