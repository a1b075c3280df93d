/* Mail notifications (notify.c): what groups.c and producers.c call where group events
 * happen. Each mail honours its recipient's group_events setting and carries the turn-off
 * link; a mail that cannot be queued is logged, never a failure of the page. */
#ifndef MARKET_NOTIFY_H
#define MARKET_NOTIFY_H

#include "plugins/market/market.h"

int mk_notify_register(halle_host *h, const halle_api *api);
/* uid asked to join group gid (approval), or is on its waiting list (waiting = 1): to the
 * group's coordinators. */
void mk_notify_join_request(int64_t gid, int64_t uid, int waiting);
/* uid's request to join gid was accepted (or admitted from the waiting list), or refused. */
void mk_notify_member_decision(int64_t gid, int64_t uid, int accepted);
/* Producer pid asks to sell to group gid: to the group's coordinators. */
void mk_notify_producer_request(int64_t gid, int64_t pid);

#endif
