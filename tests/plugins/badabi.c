/* Test plugin built for a future plugin ABI: halle must refuse it with a message. */
#include "include/halle/plugin.h"

static int init(halle_host *h, const halle_api *a)
{
    (void)h;
    (void)a;
    return HALLE_OK;
}

HALLE_PLUGIN_DESCRIPTOR = {
    HALLE_PLUGIN_ABI + 1, sizeof(halle_plugin), 1, "badabi", "1.0.0", "built for another ABI", NULL, init, NULL, NULL,
};
