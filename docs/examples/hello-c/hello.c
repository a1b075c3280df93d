/* An out-of-tree halle plugin in C, built against the installed SDK only (see README.md):
 * a greeting page whose text is a setting, a header added to every response, and a filter
 * that refuses one path with a message. */
#include <halle/plugin.h>
#include <jansson.h>
#include <string.h>

static const halle_api *api;
static halle_host *self;

static int greet(halle_request *r, void *ud)
{
    (void)ud;
    const char *greeting = api->setting(self, "greeting");
    api->resp_write(r, "<!DOCTYPE html><title>hello</title><p>", 38);
    api->resp_html(r, greeting ? greeting : "Bonjour");
    api->resp_write(r, ", ", 2);
    api->resp_html(r, api->req_route_param(r, "name"));
    return api->resp_write(r, "</p>\n", 5);
}

static int add_header(void *ud, halle_hook_call *c)
{
    (void)ud;
    json_object_set_new(json_object_get(api->call_value(c), "headers"), "X-Hello", json_string("1"));
    return HALLE_HOOK_CONTINUE;
}

static int refuse(void *ud, halle_hook_call *c)
{
    (void)ud;
    const char *path = json_string_value(json_object_get(api->call_value(c), "path"));
    if (path && !strcmp(path, "/hello/closed"))
        return api->call_stop(c, 403, "the hello plugin keeps this page closed");
    return HALLE_HOOK_CONTINUE;
}

static int init(halle_host *h, const halle_api *a)
{
    api = a;
    self = h;
    if (a->api_version < 1)
        return HALLE_ERROR;
    if (a->route(h, HALLE_GET, "/hello/(?<name>[A-Za-z]+)", greet, NULL) != HALLE_OK ||
        a->hook(h, "response.before", 10, add_header, NULL) != HALLE_OK ||
        a->hook(h, "request.before", 10, refuse, NULL) != HALLE_OK) {
        a->log(h, HALLE_LOG_ERROR, "cannot register: %s", a->last_error(h));
        return HALLE_ERROR;
    }
    return HALLE_OK;
}

HALLE_PLUGIN_DESCRIPTOR = {
    HALLE_PLUGIN_HEADER,
    1,                     /* min_api_version */
    "hello",
    "1.0.0",
    "Greets visitors (example plugin)",
    NULL,                  /* requires */
    init,
    NULL,                  /* fini */
    NULL,                  /* manifest_json: settings, group_level, privacy (API 9) */
};
