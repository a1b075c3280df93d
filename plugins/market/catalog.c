/* Marketplace: catalog (being written). */
#include "plugins/market/market.h"

int mk_catalog_register(halle_host *h, const halle_api *api)
{
    (void)h;
    (void)api;
    return HALLE_OK;
}
