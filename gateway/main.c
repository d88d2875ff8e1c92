/* gateway master: parse flags and config, bind the listener, pre-fork the
 * workers, respawn one that dies, forward SIGHUP (reload) and SIGTERM/SIGINT
 * (drain). The master serves no traffic and holds no request state, so it
 * has nothing to crash on.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

#include "budget.h"
#include "config.h"
#include "cpagent.h"
#include "log.h"
#include "metrics.h"
#include "respstore.h"
#include "worker.h"

#define MAX_WORKERS       256
#define DEFAULT_METRICS_LISTEN "127.0.0.1:9090"
#define RESPAWN_BACKOFF_S 1    /* a worker dying at once on start must not spin the CPU */

typedef struct slot {
    pid_t  pid;
    time_t started;
} slot_t;

static slot_t      slots[MAX_WORKERS];
static slot_t      agent;          /* the control-plane agent, when control_plane is set */
static int         nworkers;
static int         listen_fd = -1;
static const char *config_path;
static gw_config  *cfg;

static void usage(FILE *out)
{
    fprintf(out,
        "usage: gateway --config FILE [options]\n"
        "       gateway --check-config FILE\n"
        "\n"
        "  -c, --config FILE        gateway.yaml (see README)\n"
        "      --check-config FILE  validate FILE, print the first error with its field path, exit\n"
        "  -l, --listen HOST:PORT   override 'listen'\n"
        "  -w, --workers N          override 'workers' (0 = one per core)\n"
        "      --log-level LEVEL    debug | info | warn | error (default info)\n"
        "  -h, --help               this text\n"
        "\n"
        "Signals to the master: SIGHUP reloads the config file, SIGTERM/SIGINT drain and exit.\n");
}

static int bind_listener(const char *host, int port)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) { log_error("listen %s:%d: %s", host, port, gai_strerror(rc)); return -1; }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        /* accepted sockets inherit TCP_NODELAY from the listener on Linux */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
            bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
            log_error("listen %s:%d: %s", host, port, strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        break;
    }
    freeaddrinfo(res);
    return fd;
}

static pid_t spawn(int index)
{
    pid_t pid = fork();
    if (pid < 0) { log_error("fork: %s", strerror(errno)); return -1; }
    if (pid == 0) {
        int rc = worker_run(listen_fd, cfg, config_path, index);
        _exit(rc);
    }
    slots[index].pid = pid;
    slots[index].started = time(NULL);
    return pid;
}

static void spawn_agent(void)
{
    pid_t pid = fork();
    if (pid < 0) { log_error("fork: %s", strerror(errno)); return; }
    if (pid == 0) {
        close(listen_fd);   /* the agent serves no traffic */
        if (metrics_listener() >= 0) close(metrics_listener());
        _exit(cpagent_run(cfg, nworkers));
    }
    agent.pid = pid;
    agent.started = time(NULL);
}

static void signal_workers(int sig)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (slots[i].pid > 0) kill(slots[i].pid, sig);
    if (agent.pid > 0 && sig != SIGHUP) kill(agent.pid, sig);
}

static int live_workers(void)
{
    int n = agent.pid > 0;
    for (int i = 0; i < MAX_WORKERS; i++) n += slots[i].pid > 0;
    return n;
}

static void describe_exit(int status, char *out, size_t len)
{
    if (WIFSIGNALED(status)) snprintf(out, len, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else snprintf(out, len, "exited with code %d", WEXITSTATUS(status));
}

/* Reaps dead children; respawns them unless we are stopping. */
static void reap(int stopping)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == agent.pid) {
            char why[96];
            describe_exit(status, why, sizeof why);
            agent.pid = 0;
            if (stopping || !cfg->control_plane) { log_info("agent (pid %d) %s", (int)pid, why); continue; }
            log_warn("agent (pid %d) %s; respawning", (int)pid, why);
            if (time(NULL) - agent.started < RESPAWN_BACKOFF_S) sleep(RESPAWN_BACKOFF_S);
            spawn_agent();
            continue;
        }
        for (int i = 0; i < MAX_WORKERS; i++) {
            if (slots[i].pid != pid) continue;
            slots[i].pid = 0;
            char why[96];
            describe_exit(status, why, sizeof why);
            if (stopping) { log_info("worker %d (pid %d) %s", i, (int)pid, why); break; }
            if (i >= nworkers) { log_info("retired worker %d (pid %d) %s", i, (int)pid, why); break; }
            log_error("worker %d (pid %d) %s; respawning", i, (int)pid, why);
            if (time(NULL) - slots[i].started < RESPAWN_BACKOFF_S) sleep(RESPAWN_BACKOFF_S);
            spawn(i);
            break;
        }
    }
}

static int effective_workers(const gw_config *c)
{
    if (c->workers > 0) return c->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > MAX_WORKERS ? MAX_WORKERS : n) : 1;
}

static void reload(void)
{
    char err[512];
    gw_config *next = config_load(config_path, err, sizeof err);
    if (!next) { log_error("reload refused, config unchanged: %s", err); return; }
    if (next->control_plane && cpagent_prepare_config(next, err, sizeof err) < 0) {
        log_error("reload refused, config unchanged: %s", err);
        config_unref(next);
        return;
    }
    if (!cfg->control_plane != !next->control_plane) {
        log_error("reload refused: switching between standalone and control-plane mode needs a restart");
        config_unref(next);
        return;
    }
    /* the agent reads its settings at start: restart it when they change */
    int agent_restart = next->control_plane && (strcmp(next->control_plane, cfg->control_plane) ||
                                                strcmp(next->state_dir, cfg->state_dir) ||
                                                strcmp(next->dataplane_id, cfg->dataplane_id));
    if (strcmp(next->listen_host, cfg->listen_host) || next->listen_port != cfg->listen_port)
        log_warn("'listen' changed: a restart is needed for that; the rest is reloaded");
    /* workers re-read the file themselves and swap their snapshot; no
     * connection is touched */
    signal_workers(SIGHUP);
    int want = effective_workers(next);
    for (int i = want; i < nworkers; i++)
        if (slots[i].pid > 0) kill(slots[i].pid, SIGTERM);
    int old = nworkers;
    nworkers = want;
    /* new workers fork from the master, which must hold the new snapshot */
    config_unref(cfg);
    cfg = next;
    for (int i = old; i < want; i++) if (slots[i].pid <= 0) spawn(i);
    if (agent_restart && agent.pid > 0) kill(agent.pid, SIGTERM);   /* reap() respawns it with the new settings */
    log_info("reloaded %s: %zu models, %zu keys, %d workers", config_path, cfg->nmodels, config_key_count(cfg), nworkers);
}

/* A whole decimal number in [lo, hi]; -1 for anything else. */
static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", required_argument, NULL, 'C' },
        { "listen", required_argument, NULL, 'l' },
        { "workers", required_argument, NULL, 'w' },
        { "log-level", required_argument, NULL, 'L' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *check = NULL, *listen_override = NULL;
    int workers_override = -1;
    int c;
    while ((c = getopt_long(argc, argv, "c:l:w:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'C': check = optarg; break;
        case 'l': listen_override = optarg; break;
        case 'w':
            if (parse_int(optarg, 0, 1024, &workers_override) < 0) {
                fprintf(stderr, "--workers must be a number from 0 to 1024\n");
                return 2;
            }
            break;
        case 'L':
            if (!strcmp(optarg, "debug")) log_set_level(LOG_DEBUG);
            else if (!strcmp(optarg, "warn")) log_set_level(LOG_WARN);
            else if (!strcmp(optarg, "error")) log_set_level(LOG_ERROR);
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    char err[512];
    if (check) {
        gw_config *t = config_load(check, err, sizeof err);
        if (!t) { fprintf(stderr, "%s: %s\n", check, err); return 1; }
        printf("%s: ok (%zu models, %zu keys)\n", check, t->nmodels, config_key_count(t));
        config_unref(t);
        return 0;
    }
    if (!config_path) { usage(stderr); return 2; }
    log_set_component("master");
    if (!(cfg = config_load(config_path, err, sizeof err))) { log_error("%s", err); return 1; }
    if (listen_override) {
        const char *colon = strrchr(listen_override, ':');
        if (!colon) { log_error("--listen must be host:port"); return 2; }
        free(cfg->listen_host);
        cfg->listen_host = strndup(listen_override, (size_t)(colon - listen_override));
        if (!cfg->listen_host) return 1;
        if (parse_int(colon + 1, 1, 65535, &cfg->listen_port) < 0) { log_error("--listen: bad port"); return 2; }
    }
    if (workers_override >= 0) cfg->workers = workers_override;
    if (cfg->control_plane && cpagent_prepare_config(cfg, err, sizeof err) < 0) { log_error("%s", err); return 1; }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) { log_error("curl_global_init failed"); return 1; }
    if ((listen_fd = bind_listener(cfg->listen_host, cfg->listen_port)) < 0) return 1;
    /* before any fork: every worker (and every respawned one) shares it */
    if (budget_node_init() < 0) log_warn("no shared budget table (%s): workers count spend alone", strerror(errno));
    if (metrics_init(MAX_WORKERS) < 0) return 1;
    if (cfg->responses_store_bytes) {   /* stored /v1/responses answers, for whichever worker is asked */
        size_t entry = cfg->responses_max_entry_bytes < cfg->responses_store_bytes ? cfg->responses_max_entry_bytes
                                                                                   : cfg->responses_store_bytes;
        respstore_limits rl = { .total_bytes = cfg->responses_store_bytes, .max_entry_bytes = entry,
                                .max_per_key = (int)cfg->responses_max_per_key, .ttl_s = cfg->responses_ttl_s };
        if (respstore_init(&rl) < 0) log_warn("responses: no shared store; store:true answers are not kept");
    }
    /* metrics_listen: host:port, or off; unset means the default port, given
     * up with a warning when taken (a second gateway on the host still starts) */
    const char *mlisten = cfg->metrics_listen ? cfg->metrics_listen : DEFAULT_METRICS_LISTEN;
    if (*mlisten && strcmp(mlisten, "off")) {
        const char *colon = strrchr(mlisten, ':');
        char host[256];
        int mfd = -1;
        if (colon && (size_t)(colon - mlisten) < sizeof host) {
            memcpy(host, mlisten, (size_t)(colon - mlisten));
            host[colon - mlisten] = '\0';
            int mport;
            mfd = parse_int(colon + 1, 1, 65535, &mport) == 0 ? bind_listener(host, mport) : -1;
        } else log_error("metrics_listen must be host:port or off");
        if (mfd < 0 && cfg->metrics_listen) return 1;
        if (mfd < 0) log_warn("metrics: default listener %s unavailable; set metrics_listen", mlisten);
        else {
            metrics_set_listener(mfd);
            log_info("metrics on http://%s/metrics", mlisten);
        }
    }

    /* signals arrive through sigtimedwait, never as handlers: no async-signal-safety traps */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD); sigaddset(&set, SIGHUP); sigaddset(&set, SIGTERM); sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    nworkers = effective_workers(cfg);
    log_info("listening on %s:%d with %d workers (%zu models, %zu keys)", cfg->listen_host, cfg->listen_port,
             nworkers, cfg->nmodels, config_key_count(cfg));
    if (cfg->control_plane) {
        log_info("control plane %s (data plane id %s, state in %s)", cfg->control_plane, cfg->dataplane_id, cfg->state_dir);
        spawn_agent();
    }
    for (int i = 0; i < nworkers; i++) spawn(i);

    int stopping = 0;
    for (;;) {
        struct timespec tick = { 1, 0 };
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGCHLD || sig < 0) reap(stopping);
        else if (sig == SIGHUP && !stopping) reload();
        else if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping) {
                stopping = 1;
                log_info("signal %d: draining workers", sig);
                close(listen_fd);  /* new connections are refused once every worker closed its copy too */
                signal_workers(SIGTERM);
            } else {
                log_warn("second stop signal: killing workers");
                signal_workers(SIGKILL);
            }
        }
        if (stopping) {
            reap(1);
            if (live_workers() == 0) break;
        }
    }
    log_info("stopped");
    config_unref(cfg);
    curl_global_cleanup();
    return 0;
}
