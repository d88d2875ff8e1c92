#include "usagelog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "buf.h"
#include "gateway.pb-c.h"
#include "log.h"

#define ID_MAX    64
#define NAME_MAX_ 256

typedef struct rec {
    char    request_id[ID_MAX];
    char    key_id[37], team_id[37];
    char    alias[NAME_MAX_], provider[64], upstream_model[NAME_MAX_], routed_alias[NAME_MAX_];
    int64_t ts_ms, prompt, completion, cached, cost_e10;
    int32_t latency_ms, ttft_ms, status, attempts;
    int     cache_hit;
    double  cache_similarity;
    char    guard[128];
} rec;

typedef struct vrec {
    char    request_id[ID_MAX];
    char    alias[NAME_MAX_], variant_a[NAME_MAX_], variant_b[NAME_MAX_], judge_alias[NAME_MAX_], judge_model[NAME_MAX_];
    char    winner[4];
    int64_t ts_ms;
} vrec;

struct usagelog {
    struct event  *timer;
    char           dir[512];
    char          *dataplane_id;
    int            worker;
    uint64_t       seq;
    size_t         n;
    rec            recs[USAGELOG_BATCH];
    Gw__UsageEvent pb[USAGELOG_BATCH];
    Gw__UsageEvent *pbp[USAGELOG_BATCH];
    size_t         nv;
    vrec           vrecs[USAGELOG_VERDICTS];
    Gw__AbVerdict  vpb[USAGELOG_VERDICTS];
    Gw__AbVerdict *vpbp[USAGELOG_VERDICTS];
    buf_t          packed;            /* reused for every batch */
    int64_t        last_error_log;
};

int usagelog_dir(const char *state_dir, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/usage", state_dir);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

#define copy str_copy_trunc

static int32_t ms32(double ms) { return ms <= 0 ? 0 : ms > 2e9 ? 2000000000 : (int32_t)(ms + 0.5); }

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    usagelog_flush(arg);
}

void usagelog_add(usagelog *l, const usage_event_in *e)
{
    if (!l) return;
    rec *r = &l->recs[l->n++];
    copy(r->request_id, sizeof r->request_id, e->request_id);
    copy(r->key_id, sizeof r->key_id, e->key_id);
    copy(r->team_id, sizeof r->team_id, e->team_id);
    copy(r->alias, sizeof r->alias, e->model_alias);
    copy(r->routed_alias, sizeof r->routed_alias, e->routed_alias);
    copy(r->provider, sizeof r->provider, e->provider);
    copy(r->upstream_model, sizeof r->upstream_model, e->upstream_model);
    r->ts_ms = e->ts_ms;
    r->prompt = e->usage.present ? e->usage.prompt_tokens : 0;
    r->completion = e->usage.present ? e->usage.completion_tokens : 0;
    r->cached = e->usage.present ? e->usage.cached_tokens : 0;
    r->cost_e10 = e->cost_e10;
    r->latency_ms = ms32(e->latency_ms);
    r->ttft_ms = ms32(e->ttft_ms);
    r->status = e->status;
    r->attempts = e->attempts;
    r->cache_hit = e->cache_hit;
    r->cache_similarity = e->cache_similarity;
    copy(r->guard, sizeof r->guard, e->guard);
    if (l->n == USAGELOG_BATCH) { usagelog_flush(l); return; }
    if (l->n == 1) {
        struct timeval tv = { 0, USAGELOG_FLUSH_MS * 1000 };
        event_add(l->timer, &tv);
    }
}

void usagelog_add_verdict(usagelog *l, const ab_verdict_in *v)
{
    if (!l) return;
    vrec *r = &l->vrecs[l->nv++];
    copy(r->request_id, sizeof r->request_id, v->request_id);
    copy(r->alias, sizeof r->alias, v->alias);
    copy(r->variant_a, sizeof r->variant_a, v->variant_a);
    copy(r->variant_b, sizeof r->variant_b, v->variant_b);
    copy(r->winner, sizeof r->winner, v->winner);
    copy(r->judge_alias, sizeof r->judge_alias, v->judge_alias);
    copy(r->judge_model, sizeof r->judge_model, v->judge_model);
    r->ts_ms = v->ts_ms;
    if (l->nv == USAGELOG_VERDICTS) { usagelog_flush(l); return; }
    if (l->nv == 1 && l->n == 0) {
        struct timeval tv = { 0, USAGELOG_FLUSH_MS * 1000 };
        event_add(l->timer, &tv);
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The batch as a file the agent can pick up; -1 (errno) on failure. */
static int write_batch(usagelog *l, const char *data, size_t len)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    char path[640], tmp[650];
    l->seq++;
    snprintf(path, sizeof path, "%s/%013lld-%ld-%d-%llu.ub", l->dir, (long long)ms, (long)getpid(), l->worker,
             (unsigned long long)l->seq);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    int rc = write_all(fd, data, len);
    int saved = errno;
    if (close(fd) < 0 && rc == 0) { rc = -1; saved = errno; }
    if (rc == 0 && rename(tmp, path) < 0) { rc = -1; saved = errno; }
    if (rc < 0) { unlink(tmp); errno = saved; }
    return rc;
}

void usagelog_flush(usagelog *l)
{
    if (!l || (l->n == 0 && l->nv == 0)) return;
    event_del(l->timer);
    for (size_t i = 0; i < l->n; i++) {
        rec *r = &l->recs[i];
        Gw__UsageEvent *e = &l->pb[i];
        gw__usage_event__init(e);
        e->request_id = r->request_id;
        e->ts_ms = r->ts_ms;
        e->key_id = r->key_id;
        e->team_id = r->team_id;
        e->model_alias = r->alias;
        e->routed_alias = r->routed_alias;
        e->provider = r->provider;
        e->upstream_model = r->upstream_model;
        e->prompt_tokens = r->prompt;
        e->completion_tokens = r->completion;
        e->cached_tokens = r->cached;
        e->cost_e10 = r->cost_e10;
        e->cost_usd = (double)r->cost_e10 / 1e10;
        e->latency_ms = r->latency_ms;
        e->ttft_ms = r->ttft_ms;
        e->status = r->status;
        e->attempts = r->attempts;
        e->cache_hit = r->cache_hit;
        e->cache_similarity = r->cache_similarity;
        e->guard = r->guard;
        l->pbp[i] = e;
    }
    for (size_t i = 0; i < l->nv; i++) {
        vrec *r = &l->vrecs[i];
        Gw__AbVerdict *v = &l->vpb[i];
        gw__ab_verdict__init(v);
        v->request_id = r->request_id;
        v->ts_ms = r->ts_ms;
        v->alias = r->alias;
        v->variant_a = r->variant_a;
        v->variant_b = r->variant_b;
        v->winner = r->winner;
        v->judge_alias = r->judge_alias;
        v->judge_model = r->judge_model;
        l->vpbp[i] = v;
    }
    Gw__UsageBatch b = GW__USAGE_BATCH__INIT;
    b.dataplane_id = l->dataplane_id;
    b.n_events = l->n;
    b.events = l->pbp;
    b.n_verdicts = l->nv;
    b.verdicts = l->vpbp;
    size_t len = gw__usage_batch__get_packed_size(&b);
    buf_reset(&l->packed);
    size_t n = l->n + l->nv;
    l->n = l->nv = 0;
    if (buf_reserve(&l->packed, len) < 0) {
        log_error("out of memory: %zu usage events dropped", n);
        return;
    }
    gw__usage_batch__pack(&b, (uint8_t *)l->packed.data);
    if (write_batch(l, l->packed.data, len) < 0) {
        /* disk full or gone: say so, but at most every few seconds */
        int64_t now = (int64_t)time(NULL);
        if (now - l->last_error_log >= 5) {
            log_error("cannot spool %zu usage events in %s: %s", n, l->dir, strerror(errno));
            l->last_error_log = now;
        }
    }
}

usagelog *usagelog_open(struct event_base *base, const char *state_dir, const char *dataplane_id, int worker)
{
    usagelog *l = calloc(1, sizeof *l);
    if (!l) { log_error("out of memory"); return NULL; }
    buf_init(&l->packed);
    l->worker = worker;
    if (usagelog_dir(state_dir, l->dir, sizeof l->dir) < 0) { log_error("state_dir path too long"); goto fail; }
    if (mkdir(l->dir, 0700) < 0 && errno != EEXIST) { log_error("mkdir %s: %s", l->dir, strerror(errno)); goto fail; }
    if (!(l->dataplane_id = strdup(dataplane_id ? dataplane_id : ""))) goto fail;
    if (!(l->timer = evtimer_new(base, on_timer, l))) { log_error("evtimer_new failed"); goto fail; }
    return l;
fail:
    free(l->dataplane_id);
    free(l);
    return NULL;
}

void usagelog_close(usagelog *l)
{
    if (!l) return;
    usagelog_flush(l);
    event_free(l->timer);
    buf_free(&l->packed);
    free(l->dataplane_id);
    free(l);
}
