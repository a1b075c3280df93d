/* Safe Markdown rendering (see markdown.h). cmark's default (safe) mode already replaces raw
 * HTML and javascript:/vbscript:/file:/data: links; the walk below narrows links and images to
 * the schemes halle allows, and relative links stay as they are. */
#include "core/markdown.h"

#include <cmark.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TEXT (256 * 1024)

static int allowed_url(const char *url)
{
    if (!url || !*url)
        return 1;
    const char *colon = strchr(url, ':');
    const char *slash = strchr(url, '/');
    if (!colon || (slash && slash < colon)) /* relative: /groups/x, ../y, #anchor */
        return 1;
    return !strncasecmp(url, "http:", 5) || !strncasecmp(url, "https:", 6) || !strncasecmp(url, "mailto:", 7);
}

int hl_markdown_render(const char *text, size_t len, char **out, hl_err *err)
{
    *out = NULL;
    if (!text)
        return hl_err_set(err, HL_EINVAL, "no text");
    if (len > MAX_TEXT)
        return hl_err_set(err, HL_ETOOBIG, "text longer than %d bytes", MAX_TEXT);
    cmark_node *doc = cmark_parse_document(text, len, CMARK_OPT_DEFAULT | CMARK_OPT_VALIDATE_UTF8);
    if (!doc)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    cmark_iter *it = cmark_iter_new(doc);
    cmark_event_type ev;
    while ((ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
        cmark_node *n = cmark_iter_get_node(it);
        cmark_node_type t = cmark_node_get_type(n);
        if (ev == CMARK_EVENT_ENTER && (t == CMARK_NODE_LINK || t == CMARK_NODE_IMAGE) &&
            !allowed_url(cmark_node_get_url(n)))
            cmark_node_set_url(n, "");
    }
    cmark_iter_free(it);
    char *html = cmark_render_html(doc, CMARK_OPT_DEFAULT);
    cmark_node_free(doc);
    if (!html)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    *out = html;
    return HL_OK;
}
