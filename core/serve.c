/* The master process (see serve.h): it binds nothing permanently. Each worker opens its own
 * SO_REUSEPORT socket, so the kernel spreads connections and a dying worker takes only its own
 * connections with it; the master starts, watches (heartbeat page, exits) and replaces the
 * workers and the jobs process, and stops or restarts them on signals. */
#include "halle-config.h"
#include "core/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/http.h"
#include "core/instance.h"
#include "core/log.h"
#include "core/migrate.h"
#include "core/plugin.h"
#include "core/worker.h"

#define CONFIG_POLL_US 2000000 /* how often the master reads the configuration's version */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct slot {
    pid_t pid;
    int64_t started_us;
    int quick_deaths;
} slot;

/* Forks a worker. *ready_fd (if not NULL) gets a pipe that becomes readable once the worker
 * listens, or at EOF if it died first. */
static pid_t spawn_worker(const hl_config *cfg, int id, hl_beat *beats, int *ready_fd)
{
    int fds[2] = {-1, -1};
    if (ready_fd && pipe2(fds, O_CLOEXEC) != 0)
        fds[0] = fds[1] = -1;
    pid_t pid = fork();
    if (pid != 0) {
        if (fds[1] >= 0)
            close(fds[1]);
        if (ready_fd)
            *ready_fd = pid > 0 ? fds[0] : -1;
        else if (fds[0] >= 0)
            close(fds[0]);
        if (pid < 0 && fds[0] >= 0)
            close(fds[0]);
        return pid;
    }
    if (fds[0] >= 0)
        close(fds[0]);
    /* The child keeps the master's blocked signal set; hl_worker_run unblocks SIGTERM and SIGINT
     * once libevent has taken them over. */
    signal(SIGHUP, SIG_IGN);
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_worker_run(cfg, id, fds[1], beats ? &beats[id] : NULL, &err);
    if (rc != HL_OK)
        hl_log(HL_LOG_ERROR, "worker %d: %s", id, err.msg);
    hl_log_close();
    _exit(rc == HL_OK ? 0 : 3);
}

/* Forks the jobs process (core/jobsproc.c, handed in by main so that http.c needs nothing
 * above it). It unblocks the signals it handles itself. */
static pid_t spawn_jobs(const hl_config *cfg, hl_jobs_main jobs_main)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Named apart from the workers in ps/top (and for the tests that count workers). */
    prctl(PR_SET_NAME, "halle-jobs", 0, 0, 0);
    signal(SIGHUP, SIG_IGN);
    hl_err err;
    hl_err_clear(&err);
    int rc = jobs_main(cfg, &err);
    if (rc != HL_OK)
        hl_log(HL_LOG_ERROR, "jobs process: %s", err.msg);
    hl_log_close();
    _exit(rc == HL_OK ? 0 : 3);
}

static int wait_ready(int fd, int timeout_ms)
{
    if (fd < 0)
        return 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ok = 0;
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        int left = (int)((deadline - now_us()) / 1000);
        if (left <= 0)
            break;
        int n = poll(&p, 1, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            char c;
            ok = read(fd, &c, 1) == 1;
        }
        break;
    }
    close(fd);
    return ok;
}

static int detect_workers(const hl_config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 64 ? (int)n : 2;
}

static void describe_exit(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

static void signal_all(slot *slots, int n, pid_t jobs_pid, int sig)
{
    for (int i = 0; i < n; i++)
        if (slots[i].pid > 0)
            kill(slots[i].pid, sig);
    if (jobs_pid > 0)
        kill(jobs_pid, sig);
}

/* Kills (SIGKILL) each worker stuck in one request past request_hard_limit; the master then
 * replaces it like any dead worker. Its connections are lost, the other workers' are not. */
static void kill_stuck(const hl_config *cfg, slot *slots, hl_beat *beats, int n)
{
    int64_t now = now_us(), limit = (int64_t)cfg->request_hard_limit * 1000000;
    for (int i = 0; i < n; i++) {
        int64_t since = __atomic_load_n(&beats[i].busy_since_us, __ATOMIC_RELAXED);
        int64_t pid = __atomic_load_n(&beats[i].pid, __ATOMIC_RELAXED);
        if (!since || slots[i].pid <= 0 || pid != slots[i].pid || now - since <= limit)
            continue;
        hl_log(HL_LOG_WARN, "worker %d (pid %d) stuck in one request for %lld s (request_hard_limit = %d); "
               "killing it", i, (int)slots[i].pid, (long long)((now - since) / 1000000), cfg->request_hard_limit);
        __atomic_store_n(&beats[i].busy_since_us, 0, __ATOMIC_RELAXED);
        kill(slots[i].pid, SIGKILL);
    }
}

int hl_serve(hl_config *cfg, hl_jobs_main jobs_main, hl_err *err)
{
    /* One `halle serve` per instance: SO_REUSEPORT would let a second one bind the same port
     * silently and share the traffic with the first. */
    int lock_fd = hl_instance_lock(cfg, "serve", err);
    if (lock_fd < 0)
        return lock_fd;
    int rc = hl_migrate_ready(cfg, err);
    if (rc) {
        close(lock_fd);
        return rc;
    }
    /* Fail now, with a message on the terminal, rather than in every worker. */
    if ((rc = hl_worker_check(cfg, err)) != HL_OK) {
        close(lock_fd);
        return rc;
    }
    int probe = hl_http_listen(cfg->listen_host, cfg->listen_port, err);
    if (probe < 0) {
        close(lock_fd);
        return probe;
    }
    if (cfg->listen_port == 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(probe, (struct sockaddr *)&ss, &sl) == 0)
            cfg->listen_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                              : ((struct sockaddr_in *)&ss)->sin_port);
    }
    close(probe);

    int n = detect_workers(cfg);
    slot *slots = calloc((size_t)n, sizeof *slots);
    size_t beats_len = (size_t)n * sizeof(hl_beat);
    hl_beat *beats = mmap(NULL, beats_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!slots || beats == MAP_FAILED) {
        free(slots);
        if (beats != MAP_FAILED)
            munmap(beats, beats_len);
        close(lock_fd);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }

    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);
    signal(SIGPIPE, SIG_IGN);

    int ipv6 = strchr(cfg->listen_host, ':') != NULL;
    hl_log(HL_LOG_INFO, "halle %s serving http://%s%s%s:%d/ with %d workers (master pid %d)", PACKAGE_VERSION,
           ipv6 ? "[" : "", cfg->listen_host, ipv6 ? "]" : "", cfg->listen_port, n, (int)getpid());
    printf("halle: serving http://%s%s%s:%d/ (%d workers, log: %s)\n", ipv6 ? "[" : "", cfg->listen_host,
           ipv6 ? "]" : "", cfg->listen_port, n, strcmp(cfg->log_file, "-") ? cfg->log_file : "stderr");
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        slots[i].pid = spawn_worker(cfg, i, beats, NULL);
        slots[i].started_us = now_us();
        if (slots[i].pid > 0)
            hl_log(HL_LOG_INFO, "worker %d started as pid %d", i, (int)slots[i].pid);
    }
    /* The jobs process: restarted when it dies, after a delay that grows while it keeps dying
     * at start (a broken plugin must not make the master spin). */
    slot jobs = {0};
    int64_t jobs_restart_at = 0;
    if (jobs_main) {
        jobs.pid = spawn_jobs(cfg, jobs_main);
        jobs.started_us = now_us();
        if (jobs.pid > 0)
            hl_log(HL_LOG_INFO, "jobs process started as pid %d", (int)jobs.pid);
    }

    /* Plugins enabled or settings changed on any machine bump the configuration's version in
     * the database: every master restarts its workers when it sees a new one. */
    hl_db *cdb = hl_db_open(cfg->db_path, 0, NULL);
    int64_t config_version = cdb ? hl_plugin_config_version(cdb) : 0;
    int64_t config_checked_us = now_us();

    int stopping = 0, alive = n + (jobs.pid > 0);
    int64_t kill_deadline = 0;
    while (alive > 0) {
        struct timespec tick = {0, 200000000};
        int sig = sigtimedwait(&set, NULL, &tick);
        int config_changed = 0;
        if (cdb && !stopping && now_us() - config_checked_us >= CONFIG_POLL_US) {
            config_checked_us = now_us();
            int64_t v = hl_plugin_config_version(cdb);
            if (v != config_version) {
                hl_log(HL_LOG_INFO, "the configuration changed in the database (plugins or settings): "
                                    "restarting workers one by one");
                config_changed = 1;
            }
        }
        if (sig == SIGHUP || config_changed)
            config_version = cdb ? hl_plugin_config_version(cdb) : 0;
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping) {
                hl_log(HL_LOG_INFO, "stopping: waiting for in-flight requests (up to %ds)", cfg->shutdown_timeout);
                stopping = 1;
                kill_deadline = now_us() + (int64_t)cfg->shutdown_timeout * 1000000;
                signal_all(slots, n, jobs.pid, SIGTERM);
            }
        } else if ((sig == SIGHUP || config_changed) && !stopping) {
            /* Rolling restart: a new worker starts before the old one is told to stop. */
            if (sig == SIGHUP)
                hl_log(HL_LOG_INFO, "SIGHUP: restarting workers one by one");
            for (int i = 0; i < n; i++) {
                pid_t old_pid = slots[i].pid;
                int ready = -1;
                pid_t pid = spawn_worker(cfg, i, beats, &ready);
                if (pid < 0 || !wait_ready(ready, 10000)) {
                    hl_log(HL_LOG_ERROR, "SIGHUP: new worker %d did not start; keeping the old one", i);
                    if (pid > 0)
                        kill(pid, SIGKILL);
                    continue;
                }
                slots[i].pid = pid;
                slots[i].started_us = now_us();
                hl_log(HL_LOG_INFO, "worker %d replaced: pid %d, old pid %d stopping", i, (int)pid, (int)old_pid);
                if (old_pid > 0)
                    kill(old_pid, SIGTERM);
            }
            /* The jobs process too (plugins may have changed); leases keep the old one's
             * last run and the new one's first from overlapping. */
            if (jobs_main && jobs.pid > 0) {
                pid_t old_pid = jobs.pid;
                pid_t pid = spawn_jobs(cfg, jobs_main);
                if (pid > 0) {
                    jobs.pid = pid;
                    jobs.started_us = now_us();
                    kill(old_pid, SIGTERM);
                    hl_log(HL_LOG_INFO, "jobs process replaced: pid %d, old pid %d stopping", (int)pid, (int)old_pid);
                }
            }
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            char why[64];
            describe_exit(status, why, sizeof why);
            if (jobs_main && pid == jobs.pid) {
                jobs.pid = 0;
                if (stopping) {
                    alive--;
                    hl_log(HL_LOG_INFO, "jobs process (pid %d) %s", (int)pid, why);
                    continue;
                }
                int quick = now_us() - jobs.started_us < 2000000;
                jobs.quick_deaths = quick ? jobs.quick_deaths + 1 : 0;
                int64_t delay = quick ? (int64_t)1000000 << (jobs.quick_deaths < 6 ? jobs.quick_deaths : 6) : 0;
                hl_log(quick ? HL_LOG_ERROR : HL_LOG_WARN, "jobs process (pid %d) %s; restarting it%s", (int)pid,
                       why, quick ? " after a delay" : "");
                jobs_restart_at = now_us() + delay;
                alive--;
                continue;
            }
            int i;
            for (i = 0; i < n && slots[i].pid != pid; i++)
                ;
            if (i == n) /* an old worker or jobs process from a rolling restart */
                continue;
            slots[i].pid = 0;
            if (stopping) {
                alive--;
                hl_log(HL_LOG_INFO, "worker %d (pid %d) %s", i, (int)pid, why);
                continue;
            }
            int quick = now_us() - slots[i].started_us < 2000000;
            slots[i].quick_deaths = quick ? slots[i].quick_deaths + 1 : 0;
            if (slots[i].quick_deaths >= 5) {
                hl_log(HL_LOG_ERROR, "worker %d (pid %d) %s; it keeps failing at start, stopping", i, (int)pid, why);
                rc = hl_err_set(err, HL_ERR, "workers keep failing at start; see the log");
                stopping = 1;
                kill_deadline = now_us() + (int64_t)cfg->shutdown_timeout * 1000000;
                alive--;
                signal_all(slots, n, jobs.pid, SIGTERM);
                continue;
            }
            hl_log(quick ? HL_LOG_ERROR : HL_LOG_WARN, "worker %d (pid %d) %s; restarting it", i, (int)pid, why);
            if (quick)
                usleep(200000);
            slots[i].pid = spawn_worker(cfg, i, beats, NULL);
            slots[i].started_us = now_us();
            if (slots[i].pid > 0)
                hl_log(HL_LOG_INFO, "worker %d started as pid %d", i, (int)slots[i].pid);
        }
        if (!stopping && jobs_main && !jobs.pid && now_us() >= jobs_restart_at) {
            jobs.pid = spawn_jobs(cfg, jobs_main);
            jobs.started_us = now_us();
            if (jobs.pid > 0) {
                alive++;
                hl_log(HL_LOG_INFO, "jobs process started as pid %d", (int)jobs.pid);
            }
        }
        if (!stopping)
            kill_stuck(cfg, slots, beats, n);
        /* A graceful stop never outlasts shutdown_timeout: what is still running then (a
         * request stuck in a plugin, a long job) is killed; a job's lease brings it back. */
        if (stopping && kill_deadline && now_us() >= kill_deadline) {
            for (int i = 0; i < n; i++)
                if (slots[i].pid > 0) {
                    hl_log(HL_LOG_WARN, "worker %d (pid %d) did not stop in time; killing it", i, (int)slots[i].pid);
                    kill(slots[i].pid, SIGKILL);
                }
            if (jobs.pid > 0) {
                hl_log(HL_LOG_WARN, "jobs process (pid %d) did not stop in time; killing it", (int)jobs.pid);
                kill(jobs.pid, SIGKILL);
            }
            kill_deadline = 0;
        }
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    free(slots);
    hl_db_close(cdb);
    munmap(beats, beats_len);
    sigprocmask(SIG_SETMASK, &old, NULL);
    hl_log(HL_LOG_INFO, "halle stopped");
    close(lock_fd);
    return rc;
}
