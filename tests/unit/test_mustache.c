/* Unit tests for the Mustache engine: every case of the official specification (JSON files in
 * $HALLE_SPEC_DIR), HTML escaping of hostile values, error messages with file and line, the
 * limits (nesting, recursion, size, cost) and a fuzz run of mutated templates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/mustache.h"

#define SPEC_DIR_DEFAULT "/work/shared/spec/mustache"

static int spec_cases_run; /* by the per-file tests, checked against the files by spec_total */

/* ---------------------------------------------------------------- helpers */

/* Loader over a JSON object {name: text}; counts its calls. */
typedef struct loader_ud {
    json_t *partials;
    int calls;
} loader_ud;

static char *json_loader(void *ud, const char *name, size_t *len)
{
    loader_ud *l = ud;
    l->calls++;
    json_t *v = l->partials ? json_object_get(l->partials, name) : NULL;
    if (!json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    char *s = malloc(*len + 1);
    if (s)
        memcpy(s, json_string_value(v), *len + 1);
    return s;
}

/* Compiles and renders; returns the output (caller frees) or NULL with err filled. */
static char *render_with(const char *tpl, const char *data, json_t *partials, int strict, hl_err *err)
{
    loader_ud l = {partials, 0};
    hl_tpl_opts o = {.loader = json_loader, .loader_ud = &l, .strict_partials = strict};
    hl_tpl *t = hl_tpl_compile("test.mustache", tpl, strlen(tpl), &o, err);
    if (!t)
        return NULL;
    json_t *ctx = data ? json_loads(data, JSON_DECODE_ANY, NULL) : NULL;
    if (data)
        assert_non_null(ctx);
    char *out = NULL;
    size_t len = 0;
    int rc = hl_tpl_render(t, ctx, &out, &len, err);
    json_decref(ctx);
    hl_tpl_free(t);
    if (rc) {
        assert_null(out);
        assert_true(err->msg[0] != '\0');
        return NULL;
    }
    assert_int_equal(strlen(out), len);
    return out;
}

static void expect(const char *tpl, const char *data, const char *want)
{
    hl_err err = {0};
    char *got = render_with(tpl, data, NULL, 0, &err);
    if (!got)
        fail_msg("template %s: error %s", tpl, err.msg);
    if (strcmp(got, want))
        print_error("template: %s\n got: %s\nwant: %s\n", tpl, got, want);
    assert_string_equal(got, want);
    free(got);
}

/* Compiles (strict partials from a JSON object) expecting failure; returns the message. */
static void expect_compile_error(const char *tpl, const char *partials, const char *msg)
{
    hl_err err = {0};
    json_t *p = partials ? json_loads(partials, 0, NULL) : NULL;
    loader_ud l = {p, 0};
    hl_tpl_opts o = {.loader = json_loader, .loader_ud = &l, .strict_partials = 1};
    hl_tpl *t = hl_tpl_compile("page.html", tpl, strlen(tpl), &o, &err);
    json_decref(p);
    if (t) {
        hl_tpl_free(t);
        fail_msg("template %s compiled, expected error '%s'", tpl, msg);
    }
    assert_true(err.code < 0);
    if (strcmp(err.msg, msg))
        print_error("template %s\n got error: %s\nwant error: %s\n", tpl, err.msg, msg);
    assert_string_equal(err.msg, msg);
}

/* Writes s with control characters escaped, so that a failing case is readable. */
static void show(char *buf, size_t size, const char *s)
{
    size_t n = 0;
    for (; *s && n + 5 < size; s++) {
        if (*s == '\n')
            n += (size_t)snprintf(buf + n, size - n, "\\n");
        else if (*s == '\r')
            n += (size_t)snprintf(buf + n, size - n, "\\r");
        else if (*s == '\t')
            n += (size_t)snprintf(buf + n, size - n, "\\t");
        else
            buf[n++] = *s;
    }
    buf[n] = '\0';
}

/* ---------------------------------------------------------------- specification */

static const char *spec_dir(void)
{
    const char *d = getenv("HALLE_SPEC_DIR");
    return d && *d ? d : SPEC_DIR_DEFAULT;
}

static int spec_optional(void)
{
    const char *o = getenv("HALLE_SPEC_OPTIONAL");
    return o && !strcmp(o, "1");
}

/* Loads one spec file; fails (or skips under HALLE_SPEC_OPTIONAL=1) when it is missing. */
static json_t *load_spec(const char *file)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", spec_dir(), file);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (spec_optional()) {
            print_message("# spec file %s missing (HALLE_SPEC_OPTIONAL=1): skipped\n", path);
            skip();
        }
        fail_msg("Mustache spec file %s cannot be read (%s); set HALLE_SPEC_DIR to the directory "
                 "holding the spec's JSON files, or HALLE_SPEC_OPTIONAL=1 to skip",
                 path, jerr.text);
    }
    return root;
}

static void run_spec_file(const char *file)
{
    json_t *root = load_spec(file);
    json_t *tests = json_object_get(root, "tests");
    assert_true(json_is_array(tests));
    size_t total = json_array_size(tests), i;
    int passed = 0, run = 0;
    json_t *tc;
    assert_true(total > 0);
    json_array_foreach(tests, i, tc) {
        const char *name = json_string_value(json_object_get(tc, "name"));
        const char *tpl = json_string_value(json_object_get(tc, "template"));
        const char *want = json_string_value(json_object_get(tc, "expected"));
        json_t *data = json_object_get(tc, "data");
        assert_non_null(name);
        assert_non_null(tpl);
        assert_non_null(want);
        run++;
        loader_ud l = {json_object_get(tc, "partials"), 0};
        hl_tpl_opts o = {.loader = json_loader, .loader_ud = &l, .strict_partials = 0};
        hl_err err = {0};
        char *got = NULL;
        size_t len = 0;
        hl_tpl *t = hl_tpl_compile(name, tpl, strlen(tpl), &o, &err);
        if (t && hl_tpl_render(t, data, &got, &len, &err) == HL_OK && !strcmp(got, want)) {
            passed++;
        } else {
            char g[2048], w[2048], tp[2048];
            show(tp, sizeof tp, tpl);
            show(w, sizeof w, want);
            if (got)
                show(g, sizeof g, got);
            else
                snprintf(g, sizeof g, "(error: %s)", err.msg);
            print_error("%s: case '%s' fails\n  template: %s\n  got:      %s\n  expected: %s\n",
                        file, name, tp, g, w);
        }
        free(got);
        hl_tpl_free(t);
    }
    json_decref(root);
    spec_cases_run += run;
    print_message("# %s: %d/%zu spec cases pass\n", file, passed, total);
    assert_int_equal(run, total);
    if ((size_t)passed != total)
        fail_msg("%s: %zu of %zu spec cases fail (see above)", file, total - (size_t)passed, total);
}

static void spec_comments(void **state) { (void)state; run_spec_file("comments.json"); }
static void spec_delimiters(void **state) { (void)state; run_spec_file("delimiters.json"); }
static void spec_interpolation(void **state) { (void)state; run_spec_file("interpolation.json"); }
static void spec_inverted(void **state) { (void)state; run_spec_file("inverted.json"); }
static void spec_partials(void **state) { (void)state; run_spec_file("partials.json"); }
static void spec_sections(void **state) { (void)state; run_spec_file("sections.json"); }
static void spec_inheritance(void **state) { (void)state; run_spec_file("~inheritance.json"); }

/* Every *.json file of the directory counts: a file with no test above makes this fail. */
static void spec_total(void **state)
{
    (void)state;
    DIR *d = opendir(spec_dir());
    if (!d) {
        if (spec_optional())
            skip();
        fail_msg("Mustache spec directory %s missing (set HALLE_SPEC_DIR, or HALLE_SPEC_OPTIONAL=1)",
                 spec_dir());
    }
    struct dirent *e;
    size_t files = 0, cases = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json"))
            continue;
        json_t *root = load_spec(e->d_name);
        cases += json_array_size(json_object_get(root, "tests"));
        json_decref(root);
        files++;
    }
    closedir(d);
    print_message("# spec: %zu files, %zu cases, %d run\n", files, cases, spec_cases_run);
    assert_int_equal(files, 7);
    assert_int_equal(cases, (size_t)spec_cases_run);
}

/* Runs the comments spec test in a child with HALLE_SPEC_DIR pointing nowhere; returns the
 * number of failed tests that cmocka reports (its output is thrown away). */
static int spec_run_without_dir(const char *optional)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("HALLE_SPEC_DIR", "/nonexistent/halle-spec", 1);
        if (optional)
            setenv("HALLE_SPEC_OPTIONAL", optional, 1);
        else
            unsetenv("HALLE_SPEC_OPTIONAL");
        const struct CMUnitTest one[] = {cmocka_unit_test(spec_comments), cmocka_unit_test(spec_total)};
        _exit(cmocka_run_group_tests_name("missing", one, NULL, NULL));
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void spec_missing_dir(void **state)
{
    (void)state;
    assert_int_equal(spec_run_without_dir(NULL), 2);  /* both fail */
    assert_int_equal(spec_run_without_dir("0"), 2);
    assert_int_equal(spec_run_without_dir("1"), 0);   /* both skipped */
}

/* ---------------------------------------------------------------- behaviour */

static void hostile_values_escaped(void **state)
{
    (void)state;
    const char *data = "{\"x\":\"<script>alert(1)</script>\",\"q\":\"a\\\"b'c&d\","
                       "\"list\":[{\"x\":\"<i>\"}],\"o\":{\"x\":\"<b>&</b>\"}}";
    expect("{{x}}", data, "&lt;script&gt;alert(1)&lt;/script&gt;");
    expect("<a title=\"{{q}}\" alt='{{q}}'>", data,
           "<a title=\"a&quot;b&#39;c&amp;d\" alt='a&quot;b&#39;c&amp;d'>");
    expect("{{#list}}[{{x}}]{{/list}}{{#o}}({{x}}){{/o}}", data, "[&lt;i&gt;](&lt;b&gt;&amp;&lt;/b&gt;)");
    expect("{{{x}}}|{{& q}}|{{o.x}}|{{{o.x}}}", data,
           "<script>alert(1)</script>|a\"b'c&d|&lt;b&gt;&amp;&lt;/b&gt;|<b>&</b>");
    expect("[{{nothing}}][{{{nothing.at.all}}}][{{x.y}}]", data, "[][][]");
    /* through a partial, and values are never parsed as templates */
    json_t *p = json_pack("{s:s}", "p", "<p>{{x}}</p>");
    hl_err err = {0};
    char *out = render_with("{{>p}}", "{\"x\":\"{{x}}<br>\"}", p, 1, &err);
    assert_non_null(out);
    assert_string_equal(out, "<p>{{x}}&lt;br&gt;</p>");
    free(out);
    json_decref(p);
}

static void values_and_truthiness(void **state)
{
    (void)state;
    expect("{{i}} {{r}} {{t}} {{f}} {{n}} {{big}} {{neg}} {{third}} {{whole}} {{e16}} {{mz}}",
           "{\"i\":42,\"r\":0.1,\"t\":true,\"f\":false,\"n\":null,\"big\":1e300,\"neg\":-7,"
           "\"third\":0.3333333333333333,\"whole\":3.0,\"e16\":1e16,\"mz\":-0.0}",
           "42 0.1 true false  1e+300 -7 0.3333333333333333 3 10000000000000000 0");
    expect("{{#s}}S{{/s}}{{^s}}!s{{/s}} {{#z}}Z{{/z}}{{^z}}!z{{/z}} {{#o}}O{{/o}} {{#a}}A{{/a}}",
           "{\"s\":\"\",\"z\":0,\"o\":{},\"a\":[]}", "!s !z O ");
    expect("{{#a}}{{.}},{{/a}}", "{\"a\":[1,\"x\",true,null,2.5]}", "1,x,true,,2.5,");
    expect("{{obj}}{{arr}}", "{\"obj\":{\"k\":1},\"arr\":[1]}", "");
    expect("{{x}}", NULL, ""); /* no context at all */
    expect("a{{! comment {{ with braces }}b", "{}", "ab");
}

static void layout_with_blocks(void **state)
{
    (void)state;
    json_t *p = json_pack("{s:s,s:s}", "layout",
                          "<html>\n  <head><title>{{$title}}Site{{/title}}</title></head>\n"
                          "  <body>\n    {{$body}}\n    <p>empty</p>\n    {{/body}}\n  </body>\n</html>\n",
                          "nav", "<nav>{{site}}</nav>\n");
    hl_err err = {0};
    char *out = render_with("{{<layout}}\n{{$title}}{{name}} - Site{{/title}}\n{{$body}}\n"
                            "{{>nav}}\n<h1>{{name}}</h1>\n{{/body}}\n{{/layout}}\n",
                            "{\"name\":\"Caf\\u00e9 <3\",\"site\":\"S\"}", p, 1, &err);
    if (!out)
        fail_msg("%s", err.msg);
    assert_string_equal(out, "<html>\n  <head><title>Café &lt;3 - Site</title></head>\n  <body>\n"
                             "    <nav>S</nav>\n    <h1>Café &lt;3</h1>\n  </body>\n</html>\n");
    free(out);
    out = render_with("{{<layout}}{{/layout}}", "{}", p, 1, &err);
    assert_non_null(out);
    assert_string_equal(out, "<html>\n  <head><title>Site</title></head>\n  <body>\n"
                             "    <p>empty</p>\n  </body>\n</html>\n");
    free(out);
    json_decref(p);
}

static void partials_compiled_once(void **state)
{
    (void)state;
    json_t *p = json_pack("{s:s,s:s}", "item", "<li>{{.}}{{>sep}}</li>", "sep", ";");
    loader_ud l = {p, 0};
    hl_tpl_opts o = {.loader = json_loader, .loader_ud = &l, .strict_partials = 1};
    hl_err err = {0};
    const char *tpl = "{{#a}}{{>item}}{{/a}}{{>item}}{{>sep}}{{>sep}}";
    hl_tpl *t = hl_tpl_compile("list", tpl, strlen(tpl), &o, &err);
    assert_non_null(t);
    assert_int_equal(l.calls, 2);
    json_t *ctx = json_pack("{s:[i,i,i]}", "a", 1, 2, 3);
    for (int round = 0; round < 3; round++) { /* one compiled template, many renders */
        char *out;
        size_t len;
        assert_int_equal(hl_tpl_render(t, ctx, &out, &len, &err), HL_OK);
        assert_string_equal(out, "<li>1;</li><li>2;</li><li>3;</li><li>;</li>;;");
        free(out);
    }
    assert_int_equal(l.calls, 2);
    json_decref(ctx);
    hl_tpl_free(t);
    json_decref(p);
    /* no loader at all: partials are empty, or an error when strict */
    o.loader = NULL;
    t = hl_tpl_compile("x", "a{{>p}}b", 8, &(hl_tpl_opts){.loader = NULL}, &err);
    assert_non_null(t);
    char *out;
    size_t len;
    assert_int_equal(hl_tpl_render(t, NULL, &out, &len, &err), HL_OK);
    assert_string_equal(out, "ab");
    free(out);
    hl_tpl_free(t);
    assert_null(hl_tpl_compile("x", "a{{>p}}b", 8, &o, &err));
    assert_int_equal(err.code, HL_ENOTFOUND);
}

static void compile_errors(void **state)
{
    (void)state;
    expect_compile_error("line1\nline2 {{name", NULL, "page.html:2: unclosed tag '{{name'");
    expect_compile_error("a\nb\n{{#items}}\n<li>\n", NULL,
                         "page.html:5: section 'items' opened on line 3 is not closed");
    expect_compile_error("{{#a}}\n{{#b}}\n{{/a}}\n{{/b}}", NULL,
                         "page.html:3: '/a' does not close 'b' opened on line 2");
    expect_compile_error("x\n{{/a}}", NULL, "page.html:2: 'a' closes nothing: no section is open");
    expect_compile_error("{{}}", NULL, "page.html:1: empty tag");
    expect_compile_error("\n{{#}}{{/}}", NULL, "page.html:2: empty tag");
    expect_compile_error("{{{ }}}", NULL, "page.html:1: empty tag");
    expect_compile_error("{{a b}}", NULL, "page.html:1: bad tag name 'a b'");
    expect_compile_error("{{a..b}}", NULL, "page.html:1: bad name 'a..b'");
    expect_compile_error("{{.a}}", NULL, "page.html:1: bad name '.a'");
    expect_compile_error("{{=<% %>}}", NULL, "page.html:1: unclosed tag '{{=<% %>}}'");
    expect_compile_error("{{=<%=}}", NULL, "page.html:1: bad set-delimiter tag (want {{=<% %>=}})");
    expect_compile_error("{{=<% = %>=}}", NULL, "page.html:1: bad set-delimiter tag (want {{=<% %>=}})");
    expect_compile_error("{{= a b c =}}", NULL, "page.html:1: bad set-delimiter tag (want {{=<% %>=}})");
    expect_compile_error("{{=<% %>=}}\n<%x", NULL, "page.html:2: unclosed tag '<%x'");
    expect_compile_error("{{<layout}}{{$a}}", "{\"layout\":\"\"}",
                         "page.html:1: block 'a' opened on line 1 is not closed");
    /* strict partials: the error names the file and line of the tag, also inside a partial */
    expect_compile_error("ok\n{{>footer}}", NULL, "page.html:2: partial 'footer' not found");
    expect_compile_error("{{<base}}{{/base}}", NULL, "page.html:1: partial 'base' not found");
    expect_compile_error("{{>a}}", "{\"a\":\"\\n\\n{{>b}}\"}", "a:3: partial 'b' not found");
    expect_compile_error("{{>a}}", "{\"a\":\"{{#x}}\"}", "a:1: section 'x' opened on line 1 is not closed");
    /* the caller's mistakes */
    hl_err err = {0};
    assert_null(hl_tpl_compile("n", NULL, 5, NULL, &err));
    assert_int_equal(err.code, HL_EINVAL);
    hl_tpl *t = hl_tpl_compile(NULL, "{{x", 3, NULL, &err);
    assert_null(t);
    assert_string_equal(err.msg, "template:1: unclosed tag '{{x'");
    t = hl_tpl_compile("n", "", 0, NULL, &err);
    assert_non_null(t);
    assert_int_equal(hl_tpl_render(t, NULL, NULL, NULL, &err), HL_EINVAL);
    char *out;
    size_t len;
    assert_int_equal(hl_tpl_render(NULL, NULL, &out, &len, &err), HL_EINVAL);
    assert_null(out);
    assert_int_equal(hl_tpl_render(t, NULL, &out, &len, NULL), HL_OK);
    assert_string_equal(out, "");
    assert_int_equal(len, 0);
    free(out);
    hl_tpl_free(t);
    hl_tpl_free(NULL);
}

static void nesting_limit(void **state)
{
    (void)state;
    char tpl[2000] = "";
    for (int i = 0; i < 101; i++)
        strcat(tpl, "{{#a}}");
    expect_compile_error(tpl, NULL, "page.html:1: sections nested deeper than 100");
    tpl[0] = '\0';
    for (int i = 0; i < 100; i++)
        strcat(tpl, "{{#a}}");
    strcat(tpl, "x");
    for (int i = 0; i < 100; i++)
        strcat(tpl, "{{/a}}");
    expect(tpl, "{\"a\":true}", "x");
}

static void recursion_limits(void **state)
{
    (void)state;
    hl_err err = {0};
    json_t *p = json_pack("{s:s,s:s,s:s}", "self", "x{{>self}}", "tree",
                          "({{name}}{{#kids}}{{>tree}}{{/kids}})", "lay", "{{<lay}}{{/lay}}");
    assert_null(render_with("{{>self}}", "{}", p, 1, &err));
    assert_int_equal(err.code, HL_ETOOBIG);
    assert_string_equal(err.msg, "self:1: partial recursion too deep");
    assert_null(render_with("{{<lay}}{{/lay}}", "{}", p, 1, &err));
    assert_string_equal(err.msg, "lay:1: partial recursion too deep");
    /* data-driven recursion works, up to the limit */
    char *out = render_with("{{>tree}}", "{\"name\":\"a\",\"kids\":[{\"name\":\"b\",\"kids\":[]},"
                                         "{\"name\":\"c\",\"kids\":[{\"name\":\"d\",\"kids\":[]}]}]}", p, 1, &err);
    assert_non_null(out);
    assert_string_equal(out, "(a(b)(c(d)))");
    free(out);
    json_t *deep = json_object(), *cur = deep;
    for (int i = 0; i < 200; i++) {
        json_t *kid = json_object();
        json_object_set_new(cur, "kids", json_pack("[o]", kid));
        cur = kid;
    }
    loader_ud l = {p, 0};
    hl_tpl *t = hl_tpl_compile("r", "{{>tree}}", 9, &(hl_tpl_opts){.loader = json_loader, .loader_ud = &l, .strict_partials = 1}, &err);
    assert_non_null(t);
    size_t len;
    assert_int_equal(hl_tpl_render(t, deep, &out, &len, &err), HL_ETOOBIG);
    assert_null(out);
    assert_string_equal(err.msg, "tree:1: partial recursion too deep");
    hl_tpl_free(t);
    json_decref(deep);
    /* a block argument that expands itself */
    json_t *q = json_pack("{s:s}", "p", "{{$a}}{{/a}}");
    assert_null(render_with("{{<p}}{{$a}}[{{$a}}{{/a}}]{{/a}}{{/p}}", "{}", q, 1, &err));
    assert_string_equal(err.msg, "test.mustache:1: templates nested too deeply while rendering");
    json_decref(q);
    json_decref(p);
}

static void size_and_cost_limits(void **state)
{
    (void)state;
    hl_err err = {0};
    size_t n = (4u << 20) + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'x', n);
    assert_null(hl_tpl_compile("big", big, n, NULL, &err));
    assert_int_equal(err.code, HL_ETOOBIG);
    assert_non_null(strstr(err.msg, "big: template larger than"));
    /* output over 64 MB: 128 KB of text repeated 600 times */
    size_t tn = 128 * 1024;
    memcpy(big, "{{#a}}", 6);
    memcpy(big + tn - 6, "{{/a}}", 6);
    hl_tpl *t = hl_tpl_compile("big", big, tn, NULL, &err);
    assert_non_null(t);
    json_t *arr = json_array();
    for (int i = 0; i < 600; i++)
        json_array_append_new(arr, json_true());
    json_t *ctx = json_pack("{s:o}", "a", arr);
    char *out;
    size_t len;
    assert_int_equal(hl_tpl_render(t, ctx, &out, &len, &err), HL_ETOOBIG);
    assert_null(out);
    assert_string_equal(err.msg, "template output larger than 67108864 bytes");
    json_decref(ctx);
    hl_tpl_free(t);
    free(big);
    /* exponential partials that print nothing stop on the cost limit */
    json_t *p = json_object();
    for (int i = 0; i < 40; i++) {
        char name[16], text[64];
        snprintf(name, sizeof name, "p%d", i);
        snprintf(text, sizeof text, "{{>p%d}}{{>p%d}}", i + 1, i + 1);
        json_object_set_new(p, name, json_string(text));
    }
    json_object_set_new(p, "p40", json_string(""));
    assert_null(render_with("{{>p0}}", "{}", p, 1, &err));
    assert_int_equal(err.code, HL_ETOOBIG);
    assert_non_null(strstr(err.msg, "template too costly to render"));
    json_decref(p);
}

/* ---------------------------------------------------------------- fuzz */

static uint32_t rnd_state = 12345;

static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return rnd_state >> 8;
}

static const char *frags[] = {
    "{{", "}}", "{{{", "}}}", "{{#a}}", "{{/a}}", "{{^b}}", "{{/b}}", "{{>p}}", "{{>q}}", "{{<p}}",
    "{{/p}}", "{{$x}}", "{{/x}}", "{{=<% %>=}}", "<%", "%>", "{{!c}}", "{{.}}", "{{a.b}}", "{{&a}}",
    "\n", "  ", "\r\n", "\t", "text", "<", "&", "{{#.}}", "{{/.}}", "{{=| |=}}", "|x|", "=", "{", "}",
    "\0", "\xff", "{{<q}}", "{{/q}}", "{{$y}}", "{{/y}}", "{{ a }}",
};

/* Seeds in the shapes of the spec's cases, so that the fuzz run does not need the spec. */
static const char *seed_templates[] = {
    "Hello, {{subject}}!\n{{{raw}}} {{&raw}} {{a.b.c}} {{.}}",
    "| This Is\n  {{#boolean}}\n|\n  {{/boolean}}\n| A Line\n",
    "{{#a}}\n{{one}}\n{{#b}}\n{{one}}{{two}}{{one}}\n{{/b}}\n{{/a}}\n",
    "{{^list}}{{n}}{{/list}} {{#list}}({{.}}){{/list}} {{#.}}({{value}}){{/.}}",
    "[\n{{#section}}\n  {{data}}\n  |data|\n{{/section}}\n\n{{= | | =}}\n|#section|\n  {{data}}\n|/section|\n]\n",
    "Begin.\n  {{! Indented Comment Block! }}\nEnd.\n{{!\nmulti\n}}",
    "\\\n {{>p}}\n/\n  {{data}}  {{> q}}\n|\r\n{{>p}}\r\n|",
    "{{<p}}{{$block}}\n    one\n    two\n{{/block}}{{/p}}\n",
    "Hi,\n  {{$block}}{{/block}}\n{{$x}}default {{#a}}{{b}}{{/a}} content{{/x}}\n",
    "test {{<q}}{{$x}}override1{{/x}}{{/q}} {{<p}}{{$y}}o2{{/y}}{{/p}}\n",
    "{{<p}}{{$nested}}\nthree\n{{/nested}}{{/p}}\n{{<q}}\n{{$x}}\n  a\n{{/x}}\n{{/q}}",
    "{{=<% %>=}}(<%text%>)<%#a%><%b%><%/a%><%={{ }}=%>{{x}}",
};

static void fuzz_templates(void **state)
{
    (void)state;
    json_t *seeds = json_array();
    for (size_t k = 0; k < sizeof seed_templates / sizeof *seed_templates; k++)
        json_array_append_new(seeds, json_string(seed_templates[k]));
    json_t *ctx = json_loads("{\"a\":[{\"b\":false,\"a\":{\"b\":\"<x>\"}},1,\"s\",[true]],\"b\":\"v\","
                             "\"x\":{\"y\":2.5}}", 0, NULL);
    assert_non_null(ctx);
    int ok = 0, bad = 0;
    char buf[4096];
    for (int round = 0; round < 2000; round++) {
        const char *seed = json_string_value(json_array_get(seeds, rnd() % json_array_size(seeds)));
        size_t n = strlen(seed);
        if (n >= sizeof buf / 2)
            n = sizeof buf / 2;
        memcpy(buf, seed, n);
        int edits = 1 + (int)(rnd() % 6);
        for (int e = 0; e < edits; e++) {
            size_t at = n ? rnd() % (n + 1) : 0;
            switch (rnd() % 4) {
            case 0: /* insert a fragment */ {
                const char *f = frags[rnd() % (sizeof frags / sizeof *frags)];
                size_t fl = strlen(f) ? strlen(f) : 1;
                if (n + fl < sizeof buf) {
                    memmove(buf + at + fl, buf + at, n - at);
                    memcpy(buf + at, f, fl);
                    n += fl;
                }
                break;
            }
            case 1: /* delete a run */ {
                size_t k = rnd() % 5;
                if (at + k > n)
                    k = n - at;
                memmove(buf + at, buf + at + k, n - at - k);
                n -= k;
                break;
            }
            case 2: /* flip a byte */
                if (at < n)
                    buf[at] = (char)rnd();
                break;
            default: /* truncate */
                n = at;
            }
        }
        /* partials are mutated templates too, naming each other */
        json_t *parts = json_pack("{s:s#,s:s}", "p", buf, (int)(n < 300 ? n : 300), "q",
                                  "{{$x}}dq{{/x}}{{>p}}");
        loader_ud l = {parts, 0};
        hl_tpl_opts o = {.loader = json_loader, .loader_ud = &l, .strict_partials = (int)(rnd() % 2)};
        hl_err err = {0};
        hl_tpl *t = hl_tpl_compile("fuzz", buf, n, &o, &err);
        if (t) {
            char *out = NULL;
            size_t len = 0;
            int rc = hl_tpl_render(t, ctx, &out, &len, &err);
            if (rc == HL_OK) {
                assert_non_null(out);
                assert_int_equal(out[len], '\0');
                ok++;
            } else {
                assert_null(out);
                assert_true(err.msg[0] != '\0');
                bad++;
            }
            free(out);
            hl_tpl_free(t);
        } else {
            assert_true(err.code < 0);
            assert_true(err.msg[0] != '\0');
            bad++;
        }
        json_decref(parts);
    }
    print_message("# fuzz: %d rendered, %d rejected\n", ok, bad);
    assert_int_equal(ok + bad, 2000);
    assert_true(ok > 200 && bad > 200);
    json_decref(ctx);
    json_decref(seeds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_comments),
        cmocka_unit_test(spec_delimiters),
        cmocka_unit_test(spec_interpolation),
        cmocka_unit_test(spec_inverted),
        cmocka_unit_test(spec_partials),
        cmocka_unit_test(spec_sections),
        cmocka_unit_test(spec_inheritance),
        cmocka_unit_test(spec_total),
        cmocka_unit_test(spec_missing_dir),
        cmocka_unit_test(hostile_values_escaped),
        cmocka_unit_test(values_and_truthiness),
        cmocka_unit_test(layout_with_blocks),
        cmocka_unit_test(partials_compiled_once),
        cmocka_unit_test(compile_errors),
        cmocka_unit_test(nesting_limit),
        cmocka_unit_test(recursion_limits),
        cmocka_unit_test(size_and_cost_limits),
        cmocka_unit_test(fuzz_templates),
    };
    return cmocka_run_group_tests_name("mustache", tests, NULL, NULL);
}
