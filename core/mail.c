/* Outgoing mail (see mail.h): requests queue rows in hl_mail_queue; a timer in one worker sends
 * the due ones over SMTP with libcurl, one message at a time and outside any transaction, and
 * records each outcome with a retry schedule. */
#include "core/mail.h"
#include "core/utf8.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"

#define ADDR_MAX 254      /* RFC 5321 path limit, brackets excluded */
#define LOCAL_MAX 64
#define LABEL_MAX 63
#define SUBJECT_MAX 998   /* RFC 5322 line limit */
#define BODY_MAX (1024 * 1024)
#define FROM_MAX 320      /* keeps even a fully escaped quoted From under 998 bytes a line */
#define URL_MAX 2048
#define WORD_MAX 900      /* longest unbroken run of a plain Subject; longer ones are encoded */
#define FOLD_AT 78        /* RFC 5322 recommended line length */
#define QP_TEXT 75        /* RFC 2045: 76 characters a line, the soft break '=' included */
#define EW_BYTES 45       /* raw bytes per encoded-word: 60 base64 characters, 75 in all */
#define MAX_ATTEMPTS HL_CLOCK_RETRY_MAX
#define LEASE_MARGIN_S 60 /* a claimed message is retried elsewhere this long after its timeout */
#define MAX_IN_FLIGHT 64
#define DEFAULT_TIMEOUT_S 20
#define TS_LEN HL_CLOCK_ISO_LEN

/* ---------------------------------------------------------------- text checks */

static int is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5322 atext: what a dot-atom may hold without quoting. */
static int is_atext(int c)
{
    return is_alnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* One-line header text: UTF-8 without control characters other than TAB. */
static int line_text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return hl_utf8_valid(s, n);
}

static int local_valid(const char *s, size_t n)
{
    if (n == 0 || n > LOCAL_MAX || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.') /* i + 1 < n: the last byte is not a dot */
                return 0;
        } else if (!is_atext((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* Host names only (letters, digits, inner hyphens, two labels or more): address literals such
 * as [192.0.2.1] are not something a user should type into a form. */
static int domain_valid(const char *s, size_t n)
{
    size_t label = 0, dots = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            dots++;
        } else if (is_alnum(c) || c == '-') {
            if ((c == '-' && label == 0) || ++label > LABEL_MAX)
                return 0;
        } else {
            return 0;
        }
    }
    return dots > 0 && label > 0 && s[n - 1] != '-';
}

/* The local part is an RFC 5322 dot-atom: quoted local parts, comments and non-ASCII
 * (SMTPUTF8) addresses are refused, so the address can go verbatim into To: and RCPT TO:<>. */
int hl_mail_address_valid(const char *addr)
{
    if (!addr)
        return 0;
    size_t n = strnlen(addr, ADDR_MAX + 1);
    if (n == 0 || n > ADDR_MAX)
        return 0;
    const char *at = memchr(addr, '@', n);
    if (!at)
        return 0;
    size_t ln = (size_t)(at - addr);
    return local_valid(addr, ln) && domain_valid(at + 1, n - ln - 1);
}

/* ---------------------------------------------------------------- time */

/* Stamps are the clock's (HALLE_NOW in tests), in the form every timestamp column uses. */
static void stamp(char out[TS_LEN], long offset)
{
    hl_clock_iso(hl_clock_now() + offset, out);
}

/* ---------------------------------------------------------------- queue */

int64_t hl_mail_queue(hl_db *db, const char *to, const char *subject, const char *body, hl_err *err)
{
    if (!db || !to || !subject || !body)
        return hl_err_set(err, HL_EINVAL, "mail: NULL argument");
    size_t tn = strnlen(to, ADDR_MAX + 1);
    if (memchr(to, '\r', tn) || memchr(to, '\n', tn))
        return hl_err_set(err, HL_EINVAL, "mail: line break in the recipient refused");
    if (!hl_mail_address_valid(to))
        return hl_err_set(err, HL_EINVAL, "mail: invalid recipient address");
    size_t sn = strnlen(subject, SUBJECT_MAX + 1);
    if (sn > SUBJECT_MAX)
        return hl_err_set(err, HL_ETOOBIG, "mail: subject over %d bytes", SUBJECT_MAX);
    if (memchr(subject, '\r', sn) || memchr(subject, '\n', sn))
        return hl_err_set(err, HL_EINVAL, "mail: line break in the subject refused");
    if (!line_text_ok(subject, sn))
        return hl_err_set(err, HL_EINVAL, "mail: control character or invalid UTF-8 in the subject");
    size_t bn = strnlen(body, BODY_MAX + 1);
    if (bn > BODY_MAX)
        return hl_err_set(err, HL_ETOOBIG, "mail: body over %d bytes", BODY_MAX);
    if (!hl_utf8_valid(body, bn))
        return hl_err_set(err, HL_EINVAL, "mail: body is not valid UTF-8");

    char now[TS_LEN];
    stamp(now, 0);
    int64_t id;
    int rc = hl_db_insert(db, err, &id,
                          "INSERT INTO hl_mail_queue (recipient, subject, body, created_at, "
                          "next_attempt_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                          "tttss", to, tn, subject, sn, body, bn, now, now);
    return rc < 0 ? rc : id;
}

/* ---------------------------------------------------------------- message building */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void buf_add(buf *b, const void *s, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_str(buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void put_base64(buf *b, const unsigned char *s, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        char o[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63], i + 1 < n ? tab[v >> 6 & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        buf_add(b, o, 4);
    }
}

/* RFC 2047 encoded-words of at most 75 characters, each holding whole UTF-8 characters (a
 * split character would not decode), joined by folding whitespace that decoders drop. The
 * first one is shortened to keep its line (which starts col characters in) within 78. */
static void put_encoded_words(buf *b, size_t col, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t room = col + 12 + 8 <= FOLD_AT ? (FOLD_AT - col - 12) / 4 * 3 : 6;
        if (room > EW_BYTES)
            room = EW_BYTES;
        size_t j = i;
        while (j < n) {
            size_t k = hl_utf8_seq((const unsigned char *)s + j, n - j);
            if (!k)
                k = 1;
            if (j + k - i > room)
                break;
            j += k;
        }
        if (i)
            buf_str(b, "\r\n ");
        col = 1;
        buf_str(b, "=?UTF-8?B?");
        put_base64(b, (const unsigned char *)s + i, j - i);
        buf_str(b, "?=");
        i = j;
    }
}

/* A Subject goes out as typed when it is printable ASCII that folds into lines under 998
 * bytes and holds nothing a reader would take for an encoded-word. */
static int subject_plain(const char *s, size_t n)
{
    size_t word = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t') {
            word = 0;
            continue;
        }
        if (c < 0x21 || c > 0x7e || ++word > WORD_MAX || (c == '=' && s[i + 1] == '?'))
            return 0;
    }
    return 1;
}

/* Folds before a blank when the line would pass 78 characters; unfolding (dropping the CRLF)
 * gives the text back. A blank that starts no word is never folded at, so no continuation
 * line is blank only. */
static void put_folded(buf *b, size_t col, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && s[j] != ' ' && s[j] != '\t')
            j++;
        int blank = s[i] == ' ' || s[i] == '\t';
        if (blank && j > i + 1 && col + (j - i) > FOLD_AT) {
            buf_str(b, "\r\n");
            col = 0;
        }
        buf_add(b, s + i, j - i);
        col += j - i;
        i = j;
    }
}

static void put_subject(buf *b, const char *s, size_t n)
{
    buf_str(b, "Subject: ");
    if (subject_plain(s, n))
        put_folded(b, strlen("Subject: "), s, n);
    else
        put_encoded_words(b, strlen("Subject: "), s, n);
    buf_str(b, "\r\n");
}

/* Display name of From: an atom sequence as is, other ASCII as a quoted-string, anything else
 * as encoded-words (allowed in a phrase; base64 uses no specials). */
static void put_phrase(buf *b, size_t col, const char *s, size_t n)
{
    int ascii = 1, atoms = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80)
            ascii = 0;
        else if ((!is_atext(c) && c != ' ') || (c == '=' && s[i + 1] == '?'))
            atoms = 0;
    }
    if (!ascii) {
        put_encoded_words(b, col, s, n);
    } else if (atoms) {
        buf_add(b, s, n);
    } else {
        buf_str(b, "\"");
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '"' || s[i] == '\\')
                buf_str(b, "\\");
            buf_add(b, s + i, 1);
        }
        buf_str(b, "\"");
    }
}

/* RFC 5322 date, with English names whatever the locale. */
static void put_date(buf *b)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)hl_clock_now();
    struct tm tm;
    char line[96];
    if (!gmtime_r(&t, &tm))
        memset(&tm, 0, sizeof tm);
    snprintf(line, sizeof line, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
             days[(unsigned)tm.tm_wday % 7], tm.tm_mday, months[(unsigned)tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    buf_str(b, line);
}

/* A Message-ID only needs to be unique: when the kernel cannot give random bytes yet, the
 * time, pid and a counter do. */
static void put_message_id(buf *b, const char *domain)
{
    unsigned char r[16];
    char id[80];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r) {
        static const char hex[] = "0123456789abcdef";
        for (size_t i = 0; i < sizeof r; i++) {
            id[2 * i] = hex[r[i] >> 4];
            id[2 * i + 1] = hex[r[i] & 15];
        }
        id[2 * sizeof r] = '\0';
    } else {
        static unsigned counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(id, sizeof id, "%lld.%ld.%d.%u", (long long)ts.tv_sec, (long)ts.tv_nsec,
                 (int)getpid(), ++counter);
    }
    buf_str(b, "Message-ID: <");
    buf_str(b, id);
    buf_str(b, "@");
    buf_str(b, domain);
    buf_str(b, ">\r\n");
}

/* Quoted-printable rather than 8bit: the result is 7-bit with lines of at most 76 characters,
 * so a long body line or a relay without 8BITMIME cannot break it. CRLF, LF and lone CR all
 * become CRLF. A body without a final line break ends with a soft break so that it decodes
 * exactly. Leading dots are left alone: libcurl dot-stuffs the DATA stream itself. */
static void put_qp_body(buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < n && s[i + 1] == '\n')
                i++;
            buf_str(b, "\r\n");
            col = 0;
            continue;
        }
        int eol = i + 1 == n || s[i + 1] == '\r' || s[i + 1] == '\n';
        char tok[3];
        size_t tn = 1;
        tok[0] = (char)c;
        /* Blanks at the end of a line are encoded: transports may strip them. */
        if (!((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !eol))) {
            tok[0] = '=', tok[1] = hex[c >> 4], tok[2] = hex[c & 15];
            tn = 3;
        }
        if (col + tn > QP_TEXT) {
            buf_str(b, "=\r\n");
            col = 0;
        }
        buf_add(b, tok, tn);
        col += tn;
    }
    if (col)
        buf_str(b, "=\r\n");
}

/* What send_due needs of the configuration, checked once a batch. */
typedef struct sender {
    const char *url;
    long use_ssl;
    long timeout;
    const char *user, *pass;
    char addr[ADDR_MAX + 1];
    const char *domain;       /* in addr */
    char name[FROM_MAX + 1];  /* display name, unquoted; may be empty */
} sender;

/* Splits "Name <addr>" (the name possibly quoted) or a bare address. */
static int parse_from(sender *s, const char *from, hl_err *err)
{
    if (!from)
        return hl_err_set(err, HL_EINVAL, "mail: no sender address (from) configured");
    size_t n = strnlen(from, FROM_MAX + 1);
    if (n > FROM_MAX)
        return hl_err_set(err, HL_ETOOBIG, "mail: sender over %d bytes", FROM_MAX);
    if (!line_text_ok(from, n))
        return hl_err_set(err, HL_EINVAL, "mail: control character or invalid UTF-8 in the sender");
    const char *a = from, *ae = from + n, *nm = from, *ne = from;
    const char *lt = memchr(from, '<', n);
    if (lt) {
        const char *gt = memchr(lt, '>', (size_t)(ae - lt));
        if (!gt)
            return hl_err_set(err, HL_EINVAL, "mail: sender has '<' without '>'");
        for (const char *p = gt + 1; p < ae; p++)
            if (*p != ' ' && *p != '\t')
                return hl_err_set(err, HL_EINVAL, "mail: text after the sender's <address>");
        a = lt + 1, ae = gt, ne = lt;
    }
    while (a < ae && (*a == ' ' || *a == '\t'))
        a++;
    while (ae > a && (ae[-1] == ' ' || ae[-1] == '\t'))
        ae--;
    while (nm < ne && (*nm == ' ' || *nm == '\t'))
        nm++;
    while (ne > nm && (ne[-1] == ' ' || ne[-1] == '\t'))
        ne--;
    if (ae - a > ADDR_MAX)
        return hl_err_set(err, HL_EINVAL, "mail: invalid sender address");
    memcpy(s->addr, a, (size_t)(ae - a));
    s->addr[ae - a] = '\0';
    if (!hl_mail_address_valid(s->addr))
        return hl_err_set(err, HL_EINVAL, "mail: invalid sender address");
    s->domain = strchr(s->addr, '@') + 1;

    int quoted = ne - nm >= 2 && *nm == '"' && ne[-1] == '"';
    if (quoted)
        nm++, ne--;
    size_t k = 0;
    for (const char *p = nm; p < ne; p++) {
        if (quoted && *p == '\\' && p + 1 < ne)
            p++;
        s->name[k++] = *p;
    }
    s->name[k] = '\0';
    return HL_OK;
}

static int loopback(const char *host)
{
    return !strcasecmp(host, "localhost") || !strcmp(host, "127.0.0.1") ||
           !strcmp(host, "[::1]") || !strcmp(host, "::1");
}

/* smtps:// is TLS from the start. For smtp://, STARTTLS is required (CURLUSESSL_ALL) except on
 * loopback: CURLUSESSL_TRY would quietly fall back to clear text whenever someone on the path
 * strips STARTTLS from the server's reply, handing over mail and password; a local relay
 * (and the test server) often offers no TLS, and loopback traffic is not exposed. */
static int parse_url(sender *s, const char *url, hl_err *err)
{
    size_t n = strnlen(url, URL_MAX + 1);
    if (n > URL_MAX)
        return hl_err_set(err, HL_ETOOBIG, "mail: smtp_url over %d bytes", URL_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            return hl_err_set(err, HL_EINVAL, "mail: blank or control character in smtp_url");

    CURLU *u = curl_url();
    if (!u)
        return hl_err_set(err, HL_ENOMEM, "mail: out of memory");
    char *scheme = NULL, *host = NULL;
    int rc = HL_OK;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        rc = hl_err_set(err, HL_EINVAL, "mail: smtp_url is not a valid URL");
    else if (!strcasecmp(scheme, "smtps"))
        s->use_ssl = CURLUSESSL_ALL;
    else if (!strcasecmp(scheme, "smtp"))
        s->use_ssl = loopback(host) ? CURLUSESSL_NONE : CURLUSESSL_ALL;
    else
        rc = hl_err_set(err, HL_EINVAL, "mail: smtp_url must start with smtp:// or smtps://");
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    s->url = url;
    return rc;
}

typedef struct row {
    int64_t id;
    int64_t attempts;
    char *to, *subject, *body;
} row;

/* The message for one queued row. Rows are checked again: they may have been written by
 * something other than hl_mail_queue. HL_EINVAL here means the row can never be sent. */
static int build_message(const sender *s, const row *r, buf *b, hl_err *err)
{
    size_t sn = strnlen(r->subject, SUBJECT_MAX + 1), bn = strnlen(r->body, BODY_MAX + 1);
    if (!hl_mail_address_valid(r->to))
        return hl_err_set(err, HL_EINVAL, "invalid recipient address");
    if (sn > SUBJECT_MAX || !line_text_ok(r->subject, sn))
        return hl_err_set(err, HL_EINVAL, "invalid subject");
    if (bn > BODY_MAX || !hl_utf8_valid(r->body, bn))
        return hl_err_set(err, HL_EINVAL, "invalid body");

    put_date(b);
    buf_str(b, "From: ");
    if (s->name[0]) {
        put_phrase(b, strlen("From: "), s->name, strlen(s->name));
        buf_str(b, " <");
        buf_str(b, s->addr);
        buf_str(b, ">\r\n");
    } else {
        buf_str(b, s->addr);
        buf_str(b, "\r\n");
    }
    buf_str(b, "To: ");
    buf_str(b, r->to);
    buf_str(b, "\r\n");
    put_subject(b, r->subject, sn);
    put_message_id(b, s->domain);
    buf_str(b, "MIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: quoted-printable\r\n"
               "\r\n");
    put_qp_body(b, r->body, bn);
    if (b->oom)
        return hl_err_set(err, HL_ENOMEM, "mail: out of memory building message %lld",
                          (long long)r->id);
    return HL_OK;
}

/* ---------------------------------------------------------------- SMTP */

typedef struct reader {
    const char *p;
    size_t len, pos;
} reader;

static size_t read_cb(char *dst, size_t size, size_t nitems, void *ud)
{
    reader *r = ud;
    size_t n = r->len - r->pos, room = size * nitems;
    if (n > room)
        n = room;
    if (n)
        memcpy(dst, r->p + r->pos, n);
    r->pos += n;
    return n;
}

/* The jobs process is single-threaded, so a flag is enough to call curl_global_init once per
 * process (it is never undone: the process keeps sending until it exits). */
static int curl_ready(hl_err *err)
{
    static int done;
    if (!done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return hl_err_set(err, HL_ERR, "mail: libcurl initialisation failed");
        done = 1;
    }
    return HL_OK;
}

/* One message on its way: everything libcurl points into lives here until it is done. */
typedef struct transfer {
    CURL *easy;
    struct curl_slist *rcpt;
    row r;
    buf msg;
    reader rd;
    char from_path[ADDR_MAX + 3], rcpt_path[ADDR_MAX + 3];
    char why[CURL_ERROR_SIZE];
    struct transfer *next;
} transfer;

struct hl_mail_sender {
    sender s;
    CURLM *multi;
    transfer *active;
    int in_flight;
    int sent, failed;
    void (*on_sent)(void *ud, int64_t id, const char *to);
    void *on_sent_ud;
};

/* Sets up one SMTP transaction on t->easy. Returns CURLE_OK or why it could not. */
static CURLcode setup_easy(const sender *s, transfer *t)
{
    snprintf(t->from_path, sizeof t->from_path, "<%s>", s->addr);
    snprintf(t->rcpt_path, sizeof t->rcpt_path, "<%s>", t->r.to);
    t->rd = (reader){t->msg.p, t->msg.len, 0};
    if (!(t->easy = curl_easy_init()) || !(t->rcpt = curl_slist_append(NULL, t->rcpt_path)))
        return CURLE_OUT_OF_MEMORY;
    CURL *c = t->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    if (rc == CURLE_OK) \
    rc = curl_easy_setopt(c, opt, val)
    SET(CURLOPT_PRIVATE, t);
    SET(CURLOPT_ERRORBUFFER, t->why);
    SET(CURLOPT_URL, s->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_SMTP | CURLPROTO_SMTPS));
#endif
    SET(CURLOPT_NOSIGNAL, 1L); /* no SIGALRM for resolver timeouts in a server process */
    SET(CURLOPT_TIMEOUT, s->timeout);
    SET(CURLOPT_USE_SSL, s->use_ssl);
    SET(CURLOPT_MAIL_FROM, t->from_path);
    SET(CURLOPT_MAIL_RCPT, t->rcpt);
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_READFUNCTION, read_cb);
    SET(CURLOPT_READDATA, &t->rd);
    SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)t->msg.len);
    if (s->user) {
        SET(CURLOPT_USERNAME, s->user);
        SET(CURLOPT_PASSWORD, s->pass ? s->pass : "");
    }
#undef SET
    return rc;
}

/* ---------------------------------------------------------------- sending the queue */

static void row_free(row *r)
{
    free(r->to);
    free(r->subject);
    free(r->body);
}

/* Copies a text column, at most limit + 1 bytes: enough for build_message to see that an
 * oversized row is over the limit without copying all of it. */
static char *col_copy(hl_stmt *st, int col, size_t limit)
{
    const char *s = hl_db_col_text(st, col);
    size_t n = s ? hl_db_col_bytes(st, col) : 0;
    if (n > limit + 1)
        n = limit + 1;
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* The first due, unclaimed row after id `after`, copied so that no statement (hence no read
 * transaction) stays open while the message is sent. HL_DB_ROW, HL_DB_DONE or an error. */
static int next_due(hl_db *db, const char *now, int64_t after, row *r, hl_err *err)
{
    hl_stmt *st = hl_db_query(db, err,
                              "SELECT id, recipient, subject, body, attempts FROM hl_mail_queue "
                              "WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ? "
                              "AND (lease_until IS NULL OR lease_until <= ?) AND id > ? ORDER BY id LIMIT 1",
                              "ssI", now, now, after);
    if (!st)
        return err->code ? err->code : HL_ERR;
    int rc = hl_db_step(st, err);
    if (rc == HL_DB_ROW) {
        r->id = hl_db_col_int64(st, 0);
        r->to = col_copy(st, 1, ADDR_MAX);
        r->subject = col_copy(st, 2, SUBJECT_MAX);
        r->body = col_copy(st, 3, BODY_MAX);
        r->attempts = hl_db_col_int64(st, 4);
        if (!r->to || !r->subject || !r->body)
            rc = hl_err_set(err, HL_ENOMEM, "mail: out of memory reading the queue");
    }
    hl_db_done(st);
    return rc;
}

/* Takes the row for this process: 1 if claimed, 0 if another process got it first. */
static int claim(hl_db *db, const row *r, const char *now, long lease_s, hl_err *err)
{
    char until[TS_LEN];
    stamp(until, lease_s);
    return hl_db_run(db, err,
                     "UPDATE hl_mail_queue SET lease_until = ? WHERE id = ? AND sent_at IS NULL "
                     "AND failed_at IS NULL AND (lease_until IS NULL OR lease_until <= ?)",
                     "sIs", until, r->id, now);
}

enum { SENT, RETRY, GIVE_UP };

static int record(hl_db *db, const row *r, int outcome, const char *why, hl_err *err)
{
    char now[TS_LEN], next[TS_LEN];
    stamp(now, 0);
    if (outcome == SENT)
        return hl_db_run(db, err,
                         "UPDATE hl_mail_queue SET sent_at = ?, last_error = NULL, lease_until = NULL "
                         "WHERE id = ?",
                         "sI", now, r->id);

    int64_t attempts = r->attempts < 0               ? 1
                       : r->attempts < MAX_ATTEMPTS ? r->attempts + 1
                                                     : MAX_ATTEMPTS;
    if (attempts >= MAX_ATTEMPTS)
        outcome = GIVE_UP;
    stamp(next, hl_clock_retry_delay(attempts));
    if (outcome == GIVE_UP)
        hl_log(HL_LOG_WARN, "mail %lld given up after %lld attempts (dead letter, see 'halle mail list'): %s",
               (long long)r->id, (long long)attempts, why);
    else
        hl_log(HL_LOG_INFO, "mail %lld not sent (attempt %lld, retry at %s): %s",
               (long long)r->id, (long long)attempts, next, why);
    return hl_db_run(db, err,
                     "UPDATE hl_mail_queue SET attempts = ?, last_error = ?, next_attempt_at = ?, "
                     "failed_at = ?, lease_until = NULL WHERE id = ?",
                     "IsssI", attempts, why, next, outcome == GIVE_UP ? now : NULL, r->id);
}

static void transfer_free(transfer *t)
{
    if (t->easy)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->rcpt);
    free(t->msg.p);
    row_free(&t->r);
    free(t);
}

hl_mail_sender *hl_mail_sender_new(const hl_mail_config *cfg, hl_err *err)
{
    if (!cfg || !cfg->smtp_url || !cfg->smtp_url[0]) {
        hl_err_set(err, HL_EINVAL, "mail: no smtp_url configured");
        return NULL;
    }
    hl_mail_sender *m = calloc(1, sizeof *m);
    if (!m) {
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    if (parse_url(&m->s, cfg->smtp_url, err) != HL_OK || parse_from(&m->s, cfg->from, err) != HL_OK ||
        curl_ready(err) != HL_OK) {
        free(m);
        return NULL;
    }
    m->s.timeout = cfg->timeout_s > 0 ? cfg->timeout_s : DEFAULT_TIMEOUT_S;
    m->s.user = cfg->username && cfg->username[0] ? cfg->username : NULL;
    m->s.pass = cfg->password;
    m->on_sent = cfg->on_sent;
    m->on_sent_ud = cfg->on_sent_ud;
    if (!(m->multi = curl_multi_init())) {
        free(m);
        hl_err_set(err, HL_ENOMEM, "mail: curl_multi_init failed");
        return NULL;
    }
    return m;
}

/* Messages still on their way are dropped: their rows keep their lease and are sent again
 * once it has passed. */
void hl_mail_sender_free(hl_mail_sender *m)
{
    if (!m)
        return;
    for (transfer *t = m->active, *next; t; t = next) {
        next = t->next;
        curl_multi_remove_handle(m->multi, t->easy);
        transfer_free(t);
    }
    curl_multi_cleanup(m->multi);
    free(m);
}

int hl_mail_sender_in_flight(const hl_mail_sender *m) { return m ? m->in_flight : 0; }

int hl_mail_sender_start(hl_mail_sender *m, hl_db *db, int max, hl_err *err)
{
    if (!m || !db)
        return hl_err_set(err, HL_EINVAL, "mail: NULL argument");
    char now[TS_LEN];
    stamp(now, 0);
    int64_t last = 0;
    int started = 0, rc;
    while (started < max && m->in_flight < MAX_IN_FLIGHT) {
        transfer *t = calloc(1, sizeof *t);
        if (!t)
            return hl_err_set(err, HL_ENOMEM, "out of memory");
        if ((rc = next_due(db, now, last, &t->r, err)) != HL_DB_ROW) {
            transfer_free(t);
            return rc < 0 ? rc : started;
        }
        last = t->r.id;
        if ((rc = claim(db, &t->r, now, m->s.timeout + LEASE_MARGIN_S, err)) <= 0) {
            transfer_free(t);
            if (rc < 0)
                return rc;
            continue; /* another process took it */
        }
        started++;
        hl_err berr;
        hl_err_clear(&berr);
        rc = build_message(&m->s, &t->r, &t->msg, &berr);
        if (rc == HL_EINVAL) { /* a row that can never be sent */
            rc = record(db, &t->r, GIVE_UP, berr.msg, err);
            m->failed++;
            transfer_free(t);
            if (rc < 0)
                return rc;
            continue;
        }
        if (rc != HL_OK) { /* out of memory: the lease brings it back later */
            transfer_free(t);
            return hl_err_set(err, rc, "%s", berr.msg);
        }
        CURLcode cc = setup_easy(&m->s, t);
        if (cc != CURLE_OK || curl_multi_add_handle(m->multi, t->easy) != CURLM_OK) {
            rc = record(db, &t->r, RETRY, cc != CURLE_OK ? curl_easy_strerror(cc) : "curl_multi_add_handle failed",
                        err);
            m->failed++;
            transfer_free(t);
            if (rc < 0)
                return rc;
            continue;
        }
        t->next = m->active;
        m->active = t;
        m->in_flight++;
    }
    return started;
}

int hl_mail_sender_poll(hl_mail_sender *m, hl_db *db, int timeout_ms, hl_err *err)
{
    if (!m || !db)
        return hl_err_set(err, HL_EINVAL, "mail: NULL argument");
    if (!m->in_flight)
        return 0;
    int running = 0;
    if (curl_multi_perform(m->multi, &running) == CURLM_OK && running && timeout_ms > 0)
        curl_multi_poll(m->multi, NULL, 0, timeout_ms, NULL);
    curl_multi_perform(m->multi, &running);
    CURLMsg *msg;
    int left, rc = HL_OK;
    while ((msg = curl_multi_info_read(m->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        transfer *t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        CURLcode result = msg->data.result;
        curl_multi_remove_handle(m->multi, msg->easy_handle);
        if (!t)
            continue;
        for (transfer **pp = &m->active; *pp; pp = &(*pp)->next)
            if (*pp == t) {
                *pp = t->next;
                break;
            }
        m->in_flight--;
        if (result != CURLE_OK && !t->why[0])
            snprintf(t->why, sizeof t->why, "%s", curl_easy_strerror(result));
        /* A success that cannot be recorded is reported: the lease keeps the row from being
         * taken again at once, and the operator sees the error in the log. */
        int r = record(db, &t->r, result == CURLE_OK ? SENT : RETRY, t->why, err);
        if (r < 0)
            rc = r;
        if (result == CURLE_OK) {
            m->sent++;
            if (m->on_sent)
                m->on_sent(m->on_sent_ud, t->r.id, t->r.to);
        } else {
            m->failed++;
        }
        transfer_free(t);
    }
    return rc < 0 ? rc : m->in_flight;
}

int hl_mail_sender_sent(const hl_mail_sender *m) { return m ? m->sent : 0; }

int hl_mail_send_due(hl_db *db, const hl_mail_config *cfg, int max, hl_err *err)
{
    hl_err local;
    if (!err)
        err = &local;
    hl_err_clear(err);
    if (!db || !cfg)
        return hl_err_set(err, HL_EINVAL, "mail: NULL argument");
    if (!cfg->smtp_url || !cfg->smtp_url[0] || max <= 0)
        return 0;
    hl_mail_sender *m = hl_mail_sender_new(cfg, err);
    if (!m)
        return err->code ? err->code : HL_ERR;
    int rc = hl_mail_sender_start(m, db, max, err);
    while (rc >= 0 && hl_mail_sender_in_flight(m) > 0)
        rc = hl_mail_sender_poll(m, db, 1000, err);
    int sent = m->sent;
    hl_mail_sender_free(m);
    return rc < 0 ? rc : sent;
}

/* ---------------------------------------------------------------- for operators */

json_t *hl_mail_list(hl_db *db, int all, hl_err *err)
{
    json_t *out = json_array();
    hl_stmt *st = out ? hl_db_query(db, err,
                                    "SELECT id, recipient, subject, created_at, next_attempt_at, attempts, sent_at, "
                                    "failed_at, last_error FROM hl_mail_queue WHERE ? = 1 OR sent_at IS NULL "
                                    "ORDER BY id DESC LIMIT 500",
                                    "i", all ? 1 : 0)
                      : NULL;
    if (!st) {
        json_decref(out);
        if (err && !err->code)
            hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    int rc;
    while ((rc = hl_db_step(st, err)) == HL_DB_ROW) {
        const char *state = hl_db_col_text(st, 6) ? "sent" : hl_db_col_text(st, 7) ? "dead" : "queued";
        const char *e = hl_db_col_text(st, 8);
#define T(i) (hl_db_col_text(st, i) ? hl_db_col_text(st, i) : "")
        json_array_append_new(out, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:o}", "id",
                                             (json_int_t)hl_db_col_int64(st, 0), "state", state, "to", T(1),
                                             "subject", T(2), "created_at", T(3), "next_attempt_at", T(4),
                                             "attempts", (json_int_t)hl_db_col_int64(st, 5), "last_error",
                                             e ? json_string(e) : json_null()));
#undef T
    }
    hl_db_done(st);
    if (rc < 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

int hl_mail_retry(hl_db *db, int64_t id, hl_err *err)
{
    char now[TS_LEN];
    stamp(now, 0);
    int rc = hl_db_run(db, err,
                       "UPDATE hl_mail_queue SET failed_at = NULL, attempts = 0, next_attempt_at = ?, "
                       "lease_until = NULL WHERE id = ? AND failed_at IS NOT NULL AND sent_at IS NULL",
                       "sI", now, id);
    if (rc == 0)
        return hl_err_set(err, HL_ENOTFOUND, "no dead mail with id %lld (see 'halle mail list')", (long long)id);
    return rc < 0 ? rc : HL_OK;
}
