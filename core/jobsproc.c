/* The jobs process (see jobsproc.h). Nothing here blocks for long: mail goes out through
 * libcurl's multi interface inside the loop, so a silent SMTP server holds neither the other
 * jobs nor, since mail left the workers, any request. */
#include "core/jobsproc.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/accounts.h"
#include "core/clock.h"
#include "core/hooks.h"
#include "core/host.h"
#include "core/worker.h"
#include "core/log.h"
#include "core/plugin.h"
#include "core/mail.h"

#define MAIL_BATCH 100

struct hl_jobsproc {
    const hl_config *cfg;
    hl_worker *w;
    halle_host **hosts;
    size_t nhosts;
    hl_mail_config mail_cfg;
    hl_mail_sender *mail;
    int wait_mail;
};

typedef struct cron {
    hl_jobsproc *p;
    const char *hook;
} cron;

static int run_cron(void *ud, const char *payload, hl_err *err)
{
    (void)payload;
    cron *c = ud;
    hl_hooks *hooks = hl_worker_hooks(c->p->w);
    char now[HL_CLOCK_ISO_LEN];
    json_t *data = json_pack("{s:s}", "time", hl_clock_iso(hl_clock_now(), now));
    if (!data)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    int rc = hl_hooks_run_action(hooks, hl_hooks_id(hooks, c->hook), data, NULL);
    json_decref(data);
    return rc < 0 ? hl_err_set(err, HL_ERR, "a %s callback failed (see the log)", c->hook) : HL_OK;
}

static void mail_sent(void *ud, int64_t id, const char *to)
{
    hl_jobsproc *p = ud;
    hl_hooks *hooks = hl_worker_hooks(p->w);
    json_t *data = json_pack("{s:I, s:s}", "id", (json_int_t)id, "to", to);
    if (data)
        hl_hooks_run_action(hooks, hl_hooks_id(hooks, "mail.sent"), data, NULL);
    json_decref(data);
}

static int run_mail(void *ud, const char *payload, hl_err *err)
{
    (void)payload;
    hl_jobsproc *p = ud;
    hl_db *db = hl_worker_db(p->w);
    if (!p->mail && !(p->mail = hl_mail_sender_new(&p->mail_cfg, err)))
        return err->code ? err->code : HL_ERR;
    int rc = hl_mail_sender_start(p->mail, db, MAIL_BATCH, err);
    while (rc >= 0 && p->wait_mail && hl_mail_sender_in_flight(p->mail) > 0)
        rc = hl_mail_sender_poll(p->mail, db, 1000, err);
    return rc < 0 ? rc : HL_OK;
}

static int run_purge(void *ud, const char *payload, hl_err *err)
{
    (void)payload;
    hl_jobsproc *p = ud;
    int n = hl_accounts_purge(hl_worker_db(p->w), p->cfg->session_idle, p->cfg->session_lifetime, err);
    if (n > 0)
        hl_log(HL_LOG_INFO, "purge: %d expired session, token or rate-limit row(s) removed", n);
    if (n < 0)
        return n;
    n = hl_db_idempotency_purge(hl_worker_db(p->w), (int64_t)HL_DB_IDEM_KEEP_DAYS * 86400, err);
    if (n > 0)
        hl_log(HL_LOG_INFO, "purge: %d idempotency key(s) older than %d days removed", n, HL_DB_IDEM_KEEP_DAYS);
    return n < 0 ? n : HL_OK;
}

static cron crons[3];

static int add_core_jobs(hl_jobsproc *p, hl_err *err)
{
    hl_jobs *j = hl_worker_jobs(p->w);
    static const char *const names[3] = {"cron.minutely", "cron.hourly", "cron.daily"};
    static const char *const schedules[3] = {"every 60", "every 3600", "daily 03:00"};
    int rc;
    for (int i = 0; i < 3; i++) {
        crons[i] = (cron){p, names[i]};
        if ((rc = hl_jobs_add(j, names[i], schedules[i], run_cron, &crons[i], NULL, err)) != HL_OK)
            return rc;
    }
    if ((rc = hl_jobs_add(j, "core.purge", "every 3600", run_purge, p, NULL, err)) != HL_OK)
        return rc;
    if (p->cfg->smtp_url && *p->cfg->smtp_url) {
        char every[32];
        snprintf(every, sizeof every, "every %d", p->cfg->mail_interval > 0 ? p->cfg->mail_interval : 5);
        if ((rc = hl_jobs_add(j, "core.mail", every, run_mail, p, NULL, err)) != HL_OK)
            return rc;
    }
    return HL_OK;
}

hl_jobsproc *hl_jobsproc_open(const hl_config *cfg, int wait_mail, hl_err *err)
{
    hl_jobsproc *p = calloc(1, sizeof *p);
    if (!p) {
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->wait_mail = wait_mail;
    p->mail_cfg = (hl_mail_config){cfg->smtp_url, cfg->mail_from, cfg->smtp_user, cfg->smtp_password, 20,
                                   mail_sent, p};
    if (!(p->w = hl_worker_cli_new(cfg, err)) || hl_host_load_all(p->w, &p->hosts, &p->nhosts, err) != HL_OK) {
        hl_jobsproc_close(p);
        return NULL;
    }
    hl_plugin_clear_suspensions(hl_worker_db(p->w), -1);
    hl_hooks_freeze(hl_worker_hooks(p->w));
    if (add_core_jobs(p, err) != HL_OK) {
        hl_jobsproc_close(p);
        return NULL;
    }
    hl_jobs_freeze(hl_worker_jobs(p->w));
    if (hl_jobs_sync(hl_worker_jobs(p->w), hl_worker_db(p->w), err) != HL_OK) {
        hl_jobsproc_close(p);
        return NULL;
    }
    return p;
}

hl_jobs *hl_jobsproc_jobs(hl_jobsproc *p) { return hl_worker_jobs(p->w); }
hl_db *hl_jobsproc_db(hl_jobsproc *p) { return hl_worker_db(p->w); }

void hl_jobsproc_close(hl_jobsproc *p)
{
    if (!p)
        return;
    hl_mail_sender_free(p->mail);
    /* The registry (freed with the worker) only frees its records, never calls a plugin. */
    hl_host_unload_all(p->hosts, p->nhosts);
    hl_worker_cli_free(p->w);
    free(p);
}

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int hl_jobsproc_main(const hl_config *cfg, hl_err *err)
{
    hl_jobsproc *p = hl_jobsproc_open(cfg, 0, err);
    if (!p)
        return err->code ? err->code : HL_ERR;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop; /* no SA_RESTART: a wait returns at once on SIGTERM */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    hl_log(HL_LOG_INFO, "jobs process ready (%d jobs)", hl_jobs_count(hl_jobsproc_jobs(p)));
    hl_db *db = hl_jobsproc_db(p);
    int64_t last_run = 0;
    while (!stop_flag) {
        int64_t now = mono_ms();
        if (now - last_run >= 1000) {
            last_run = now;
            hl_err e;
            hl_err_clear(&e);
            if (hl_jobs_run_due(hl_jobsproc_jobs(p), db, &e) < 0)
                hl_log(HL_LOG_ERROR, "jobs: %s", e.msg);
        }
        int wait_ms = (int)(1000 - (mono_ms() - last_run));
        if (wait_ms < 1)
            wait_ms = 1;
        if (p->mail && hl_mail_sender_in_flight(p->mail) > 0) {
            hl_err e;
            hl_err_clear(&e);
            if (hl_mail_sender_poll(p->mail, db, wait_ms, &e) < 0)
                hl_log(HL_LOG_ERROR, "mail queue: %s", e.msg);
        } else {
            struct timespec ts = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    hl_log(HL_LOG_INFO, "jobs process stopped");
    hl_jobsproc_close(p);
    return HL_OK;
}
