/* Marketplace: producers (being written). */
#include "plugins/market/market.h"

int mk_producers_register(halle_host *h, const halle_api *api)
{
    (void)h;
    (void)api;
    return HALLE_OK;
}
