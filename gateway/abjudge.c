#include "abjudge.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/event.h>

#include "buf.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "sse.h"
#include "translate.h"
#include "upstream.h"
#include "usagelog.h"

#define RESPONSE_MAX   (8u << 20)
#define JUDGE_MAX_TOKENS 512


/* A judgement's outcome, in the worker's stats and on /metrics. */
static void tally(uint64_t *count, int kind)
{
    (*count)++;
    metrics_judge(kind);
}

static const char DEFAULT_RUBRIC[] =
    "Judge which answer is more helpful, correct and complete for the user's request.";

enum { STAGE_SHADOW, STAGE_JUDGE, STAGE_DONE };

typedef struct ab_job {
    abjudge             *j;
    struct ab_job       *prev, *next;
    gw_config           *cfg;
    const gw_model      *model, *served, *other, *judge;
    char                 request_id[64];
    int64_t              ts_ms;
    gw_route             route;
    char                *body;         /* the client's request, owned */
    size_t               body_len;
    json_doc            *doc;
    chat_req             chat;         /* ... in the internal form */
    char                *client_raw;   /* the client's answer as sent, owned */
    size_t               client_raw_len;
    int                  stream;       /* ... as an SSE transcript */
    buf_t                a_client, a_other;   /* the two answers' text */
    buf_t                jtext;        /* the judge's prompt */
    chat_req             jreq;
    int                  swap;         /* the other variant's answer is shown first */
    int                  stage;
    struct event        *next_ev;      /* each stage starts from the loop, never inside a callback */
    const gw_deployment *dep;          /* of the call in flight */
    provider_http        http;
    buf_t                resp;
    int                  status;
    upstream_req_t      *up;
} ab_job;

struct abjudge {
    struct event_base *base;
    upstream_t        *up;
    router_t          *router;
    usagelog          *usage;
    ab_job            *jobs;
    size_t             njobs;
    uint64_t           rng;
    abjudge_stats      st;
};

abjudge *abjudge_new(struct event_base *base, upstream_t *up, router_t *router, usagelog *usage)
{
    abjudge *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->base = base; j->up = up; j->router = router; j->usage = usage;
    j->rng = (uint64_t)(uintptr_t)j ^ 0x9E3779B97F4A7C15ull;
    return j;
}

static void job_free(ab_job *job)
{
    abjudge *j = job->j;
    if (job->up) upstream_cancel(job->up);
    if (job->next_ev) event_free(job->next_ev);
    if (job->prev) job->prev->next = job->next; else j->jobs = job->next;
    if (job->next) job->next->prev = job->prev;
    j->njobs--;
    chat_req_free(&job->chat);
    chat_req_free(&job->jreq);
    json_doc_free(job->doc);
    free(job->body);
    free(job->client_raw);
    buf_free(&job->a_client); buf_free(&job->a_other); buf_free(&job->jtext);
    buf_free(&job->http.url); buf_free(&job->http.body); buf_free(&job->http.hdrs);
    buf_free(&job->resp);
    config_unref(job->cfg);
    free(job);
}

void abjudge_free(abjudge *j)
{
    if (!j) return;
    while (j->jobs) job_free(j->jobs);
    free(j);
}

void abjudge_get_stats(const abjudge *j, abjudge_stats *out)
{
    if (j) *out = j->st; else memset(out, 0, sizeof *out);
}

static uint64_t next_rand(abjudge *j)
{
    j->rng ^= j->rng << 13; j->rng ^= j->rng >> 7; j->rng ^= j->rng << 17;
    return j->rng;
}

int abjudge_wanted(const gw_model *model, gw_route route, double random01)
{
    const gw_route_policy *p = &model->policy;
    if (!p->judge_alias || !p->split_alias) return 0;
    if (route != ROUTE_CHAT && route != ROUTE_MESSAGES) return 0;
    return random01 < p->judge_sample_ratio;
}

/* ---- reading the judge ---- */

static int is_noun(const char *w)
{
    static const char *const nouns[] = { "answer", "response", "assistant", "option", "candidate", "output",
                                         "reply", "model", NULL };
    for (int i = 0; nouns[i]; i++) if (!strcmp(w, nouns[i])) return 1;
    return 0;
}

static int is_cue(const char *w)
{
    static const char *const cues[] = { "winner", "verdict", "better", "best", "prefer", "preferred", "choose",
                                        "choice", "pick", "wins", "superior", "final", NULL };
    for (int i = 0; cues[i]; i++) if (!strcmp(w, cues[i])) return 1;
    return 0;
}

static int is_tie(const char *w)
{
    return !strcmp(w, "tie") || !strcmp(w, "draw") || !strcmp(w, "tied") || !strcmp(w, "equal") || !strcmp(w, "equally");
}

#define MAX_TOKENS 4096   /* a token and its separator take 2 bytes: the whole tail fits */

typedef struct tok { char w[16]; int ref; } tok;   /* ref: -1 none, 0 tie, 1 A, 2 B */

int abjudge_parse_verdict(const char *text, size_t len)
{
    if (!text) return -1;
    /* a JSON object's "winner" (or "verdict", "better") decides on its own */
    if (len && len < 65536) {
        const char *o = memchr(text, '{', len);
        const char *c = o ? text + len : NULL;
        while (c && c > o && *(c - 1) != '}') c--;
        if (o && c && c > o) {
            json_doc *d = json_parse(o, (size_t)(c - o), NULL, NULL);
            const json_value *root = d ? json_root(d) : NULL;
            static const char *const keys[] = { "winner", "verdict", "better", "choice", NULL };
            int v = -1;
            for (int i = 0; root && keys[i] && v < 0; i++) {
                const char *s = json_get_str(root, keys[i]);
                if (s && strlen(s) < 64 && strlen(s) != len) v = abjudge_parse_verdict(s, strlen(s));
            }
            json_doc_free(d);
            if (v >= 0) return v;
        }
    }
    static tok toks[MAX_TOKENS];   /* one worker, one thread */
    if (len > 8192) {   /* judges conclude at the end: read the tail */
        text += len - 8192;
        len = 8192;
    }
    size_t n = 0;
    for (size_t i = 0; i < len && n < MAX_TOKENS;) {
        if (!isalnum((unsigned char)text[i])) { i++; continue; }
        size_t s = i;
        while (i < len && isalnum((unsigned char)text[i])) i++;
        tok *t = &toks[n++];
        size_t wl = i - s < sizeof t->w - 1 ? i - s : sizeof t->w - 1;
        for (size_t k = 0; k < wl; k++) t->w[k] = (char)tolower((unsigned char)text[s + k]);
        t->w[wl] = '\0';
        t->ref = -1;
        if (is_tie(t->w)) t->ref = 0;
        else if (!strcmp(t->w, "b") && i - s == 1) t->ref = 2;
        else if (!strcmp(t->w, "a") && i - s == 1) {
            /* "a" is also an article: a label only after a noun, or not followed by a word */
            int prev_noun = n >= 2 && is_noun(toks[n - 2].w);
            size_t k = i;
            while (k < len && text[k] == ' ') k++;
            int word_follows = k > i && k < len && isalpha((unsigned char)text[k]);
            if (prev_noun || !word_follows || (k + 2 <= len && !strncasecmp(text + k, "is", 2)) ||
                (k + 4 <= len && !strncasecmp(text + k, "wins", 4)))
                t->ref = 1;
        }
    }
    if (n == 0) return -1;
    /* the last cue ("winner", "better", "prefer", ...) with a reference near it decides */
    for (size_t c = n; c-- > 0;) {
        if (!is_cue(toks[c].w)) continue;
        for (size_t k = c + 1; k < n && k <= c + 6; k++) if (toks[k].ref >= 0) return toks[k].ref;
        for (size_t k = c; k-- > 0 && k + 4 >= c;) if (toks[k].ref >= 0) return toks[k].ref;
    }
    /* otherwise only an unambiguous answer counts */
    int seen[3] = { 0, 0, 0 };
    for (size_t k = 0; k < n; k++) if (toks[k].ref >= 0) seen[toks[k].ref] = 1;
    if (seen[0] && !seen[1] && !seen[2]) return 0;
    if (seen[1] + seen[2] == 1) return seen[1] ? 1 : 2;
    if (seen[0]) return 0;
    return -1;
}

/* ---- streamed answers ---- */

typedef struct stream_text_ctx { gw_route route; buf_t *out; } stream_text_ctx;

static void on_stream_event(void *ud, const char *event, const char *data, size_t len)
{
    stream_text_ctx *c = ud;
    (void)event;
    if (len == 0 || data[0] != '{' || c->out->len >= ABJUDGE_TEXT_MAX) return;
    json_doc *d = json_parse(data, len, NULL, NULL);
    const json_value *root = d ? json_root(d) : NULL, *t = NULL;
    if (root && c->route == ROUTE_MESSAGES) {   /* content_block_delta / text_delta */
        const char *type = json_get_str(root, "type");
        const json_value *delta = json_get(root, "delta");
        const char *dt = delta ? json_get_str(delta, "type") : NULL;
        if (type && !strcmp(type, "content_block_delta") && dt && !strcmp(dt, "text_delta")) t = json_get(delta, "text");
    } else if (root) {
        t = json_get(json_get(json_at(json_get(root, "choices"), 0), "delta"), "content");
    }
    if (t && t->type == JSON_STRING)
        buf_append(c->out, t->str, utf8_prefix(t->str, t->str_len, ABJUDGE_TEXT_MAX - c->out->len));
    json_doc_free(d);
}

int abjudge_stream_text(gw_route route, const char *sse, size_t len, buf_t *out)
{
    stream_text_ctx c = { route, out };
    sse_parser p;
    buf_reset(out);
    sse_init(&p, 1u << 20, on_stream_event, &c);
    sse_feed(&p, sse, len);
    sse_free(&p);
    return out->oom ? -1 : 0;
}

/* ---- the calls ---- */

static void job_step(evutil_socket_t fd, short what, void *arg);

static int job_schedule(ab_job *job)
{
    struct timeval now = { 0, 0 };
    if (!job->next_ev && !(job->next_ev = evtimer_new(job->j->base, job_step, job))) return -1;
    return evtimer_add(job->next_ev, &now);
}

static void fail_job(ab_job *job, const char *why)
{
    tally(&job->j->st.failed, MX_AB_FAILED);
    log_debug("ab judge %s: %s", job->request_id, why);
    job_free(job);
}

static void up_response(void *ud, upstream_req_t *u, int status) { (void)u; ((ab_job *)ud)->status = status; }

static int up_data(void *ud, upstream_req_t *u, const char *data, size_t len)
{
    ab_job *job = ud;
    (void)u;
    if (job->resp.len + len <= RESPONSE_MAX) buf_append(&job->resp, data, len);
    return 0;
}

/* The text of a whole answer from p (its own dialect). */
static int answer_text(const provider *p, const char *body, size_t len, buf_t *out)
{
    chat_resp cr;
    chat_resp_init(&cr);
    char err[160];
    int rc = p->parse_response(body, len, &cr, err, sizeof err);
    if (rc == 0) {
        size_t n = utf8_prefix(cr.text.data ? cr.text.data : "", cr.text.len, ABJUDGE_TEXT_MAX);
        buf_reset(out);
        if (buf_append(out, cr.text.data ? cr.text.data : "", n) < 0) rc = -1;
    }
    chat_resp_free(&cr);
    return rc;
}

static void up_done(void *ud, upstream_req_t *u, upstream_result res, const char *errmsg)
{
    ab_job *job = ud;
    (void)u; (void)errmsg;
    job->up = NULL;
    if (res != UPSTREAM_OK || job->status < 200 || job->status >= 300) { fail_job(job, "a call failed"); return; }
    buf_t *dst = job->stage == STAGE_SHADOW ? &job->a_other : &job->jtext;
    if (answer_text(job->dep->provider, job->resp.data ? job->resp.data : "", job->resp.len, dst) < 0) {
        fail_job(job, "an answer could not be read");
        return;
    }
    job->stage++;
    if (job_schedule(job) < 0) fail_job(job, "out of memory");
}

static const upstream_callbacks callbacks = { .on_response = up_response, .on_data = up_data, .on_done = up_done };

/* One non-streaming chat call to alias m, on the deployment its router picks. */
static int call_alias(ab_job *job, const gw_model *m, const chat_req *q)
{
    struct timeval tv;
    event_base_gettimeofday_cached(job->j->base, &tv);
    long wait;
    int i = router_pick(job->j->router, m, 0, (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000, &wait);
    if (i < 0) return -1;
    const gw_deployment *d = &m->deployments[i];
    const provider *p = d->provider;
    if (p->local_reply || !p->build_chat || !p->parse_response) return -1;   /* local providers are not judged */
    provider_call call = { .route = ROUTE_CHAT, .dep = d, .chat = q };
    char err[200];
    buf_reset(&job->http.url); buf_reset(&job->http.body); buf_reset(&job->http.hdrs);
    job->http.headers[0] = NULL;
    buf_reset(&job->resp);
    job->status = 0;
    if (p->build_chat(&call, &job->http, err, sizeof err) < 0) return -1;
    upstream_request ureq = {
        .method = "POST", .url = job->http.url.data, .headers = job->http.headers,
        .body = job->http.body.data, .body_len = job->http.body.len,
        .max_response_bytes = RESPONSE_MAX, .timeouts = d->timeouts,
    };
    job->dep = d;
    job->up = upstream_start(job->j->up, &ureq, &callbacks, job);
    return job->up ? 0 : -1;
}

/* The question as the judge sees it: the last user message's text. */
static void put_question(buf_t *out, const chat_req *q)
{
    for (size_t i = q->nmsgs; i-- > 0;) {
        if (q->msgs[i].role != ROLE_USER) continue;
        size_t start = out->len;
        for (size_t k = 0; k < q->msgs[i].nparts; k++) {
            const chat_part *p = &q->msgs[i].parts[k];
            if (p->kind != PART_TEXT) continue;
            size_t room = ABJUDGE_TEXT_MAX - (out->len - start);
            buf_append(out, p->text.p, utf8_prefix(p->text.p, p->text.n, room));
        }
        return;
    }
}

static int build_judge_request(ab_job *job)
{
    job->swap = (int)(next_rand(job->j) & 1);
    const buf_t *first = job->swap ? &job->a_other : &job->a_client;
    const buf_t *second = job->swap ? &job->a_client : &job->a_other;
    buf_t *t = &job->jtext;
    buf_reset(t);
    buf_puts(t, "Question:\n");
    put_question(t, &job->chat);
    buf_puts(t, "\n\nAnswer A:\n");
    buf_append(t, first->data ? first->data : "", first->len);
    buf_puts(t, "\n\nAnswer B:\n");
    buf_append(t, second->data ? second->data : "", second->len);
    buf_puts(t, "\n\nWhich answer is better? Reply with exactly one word: A, B or tie.");
    chat_req_init(&job->jreq);
    const char *rubric = job->model->policy.judge_rubric ? job->model->policy.judge_rubric : DEFAULT_RUBRIC;
    buf_puts(&job->jreq.system, "You are an impartial judge comparing two answers to the same question. ");
    buf_puts(&job->jreq.system, rubric);
    job->jreq.msgs = calloc(1, sizeof *job->jreq.msgs);
    chat_part *part = calloc(1, sizeof *part);
    if (!job->jreq.msgs || !part || t->oom || job->jreq.system.oom) { free(part); return -1; }
    part->kind = PART_TEXT;
    part->text.p = t->data;
    part->text.n = t->len;
    job->jreq.msgs[0].role = ROLE_USER;
    job->jreq.msgs[0].parts = part;
    job->jreq.msgs[0].nparts = 1;
    job->jreq.nmsgs = 1;
    job->jreq.has_temperature = 1;
    job->jreq.temperature = 0;
    job->jreq.max_tokens = JUDGE_MAX_TOKENS;
    return 0;
}

static void record_verdict(ab_job *job)
{
    const char *jt = job->jtext.data ? job->jtext.data : "";
    int v = abjudge_parse_verdict(jt, job->jtext.len);
    if (v < 0) {
        tally(&job->j->st.unparsed, MX_AB_UNPARSED);
        log_info("ab judge %s: no verdict in the judge's answer", job->request_id);
        return;
    }
    /* shown first = the other variant when swapped; map back to the client's variant */
    const gw_model *winner = v == 0 ? NULL : ((v == 1) != job->swap) ? job->served : job->other;
    const char *w = !winner ? "tie" : winner == job->model ? "a" : "b";
    ab_verdict_in e = {
        .request_id = job->request_id, .ts_ms = job->ts_ms, .alias = job->model->alias,
        .variant_a = job->model->alias, .variant_b = job->model->policy.split_alias, .winner = w,
        .judge_alias = job->judge->alias, .judge_model = job->dep->model,
    };
    usagelog_add_verdict(job->j->usage, &e);
    tally(&job->j->st.verdicts, MX_AB_VERDICT);
    log_info("ab verdict: alias=%s a=%s b=%s winner=%s judge=%s request_id=%s", e.alias, e.variant_a, e.variant_b,
             w, e.judge_model, e.request_id);
}

static void job_step(evutil_socket_t fd, short what, void *arg)
{
    ab_job *job = arg;
    (void)fd; (void)what;
    switch (job->stage) {
    case STAGE_SHADOW: {
        json_limits lim = { .max_depth = 64, .max_bytes = 0 };
        char msg[200];
        const char *param = NULL;
        if (!(job->doc = json_parse(job->body, job->body_len, &lim, NULL)) ||
            xlate_parse_request(job->route, json_root(job->doc), job->body, &job->chat, msg, sizeof msg, &param) < 0) {
            fail_job(job, "the request could not be read");
            return;
        }
        job->chat.stream = 0;
        job->chat.include_usage = 0;
        /* the client's answer in its own dialect: OpenAI chat or an Anthropic message */
        const provider *cp = job->route == ROUTE_MESSAGES ? &provider_anthropic : &provider_openai;
        if ((job->stream ? abjudge_stream_text(job->route, job->client_raw, job->client_raw_len, &job->a_client)
                         : answer_text(cp, job->client_raw, job->client_raw_len, &job->a_client)) < 0 ||
            job->a_client.len == 0) {
            fail_job(job, "the client's answer could not be read");
            return;
        }
        if (call_alias(job, job->other, &job->chat) < 0) fail_job(job, "no deployment of the other variant");
        return;
    }
    case STAGE_JUDGE:
        if (build_judge_request(job) < 0 || call_alias(job, job->judge, &job->jreq) < 0) fail_job(job, "no judge call");
        return;
    default:
        record_verdict(job);
        job_free(job);
    }
}

int abjudge_start(abjudge *j, const abjudge_sample *s)
{
    if (!j) return -1;
    const gw_route_policy *p = &s->model->policy;
    const gw_model *split = p->split_alias ? config_find_model(s->cfg, p->split_alias, strlen(p->split_alias)) : NULL;
    const gw_model *judge = p->judge_alias ? config_find_model(s->cfg, p->judge_alias, strlen(p->judge_alias)) : NULL;
    if (!split || !judge || (s->served != s->model && s->served != split) || j->njobs >= ABJUDGE_MAX_JOBS) {
        tally(&j->st.dropped, MX_AB_DROPPED);
        return -1;
    }
    ab_job *job = calloc(1, sizeof *job);
    if (!job) { tally(&j->st.dropped, MX_AB_DROPPED); return -1; }
    job->j = j;
    job->next = j->jobs;
    if (j->jobs) j->jobs->prev = job;
    j->jobs = job;
    j->njobs++;
    job->cfg = config_ref(s->cfg);
    job->model = s->model;
    job->served = s->served;
    job->other = s->served == s->model ? split : s->model;
    job->judge = judge;
    job->route = s->route;
    job->stream = s->stream;
    job->ts_ms = s->ts_ms;
    snprintf(job->request_id, sizeof job->request_id, "%s", s->request_id);
    chat_req_init(&job->chat);
    chat_req_init(&job->jreq);
    buf_init(&job->a_client); buf_init(&job->a_other); buf_init(&job->jtext);
    buf_init(&job->http.url); buf_init(&job->http.body); buf_init(&job->http.hdrs); buf_init(&job->resp);
    job->body = malloc(s->body_len + 1);
    job->client_raw = malloc(s->answer_len + 1);
    if (!job->body || !job->client_raw || job_schedule(job) < 0) {
        tally(&j->st.dropped, MX_AB_DROPPED);
        job_free(job);
        return -1;
    }
    memcpy(job->body, s->body, s->body_len);
    job->body[s->body_len] = '\0';
    job->body_len = s->body_len;
    memcpy(job->client_raw, s->answer, s->answer_len);
    job->client_raw[s->answer_len] = '\0';
    job->client_raw_len = s->answer_len;
    tally(&j->st.started, MX_AB_STARTED);
    return 0;
}
