/* guardcfg: parsing `guardrails:` and binding policies to aliases and keys (guardcfg.h). */
#include "guardcfg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GUARD_MAX_POLICIES 64      /* in one list */
#define GUARD_MAX_LIST     256   /* words, regexes or custom patterns in one list */

typedef struct binding {
    int          kind;
    char        *owner;
    const guard_policy *p[GUARD_MAX_CHAIN];
    size_t       n;
} binding;

struct guard_set {
    guard_policy **policies;
    size_t        npolicies, cappolicies;
    binding      *binds;
    size_t        nbinds, capbinds;
};

typedef struct pctx {
    yaml_document_t *doc;
    char            *err;
    size_t           errlen;
    int              failed;
} pctx;

static void fail(pctx *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(pctx *c, const char *path, const char *fmt, ...)
{
    if (c->failed) return;
    c->failed = 1;
    int n = snprintf(c->err, c->errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= c->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static yaml_node_t *nd(pctx *c, int id) { return yaml_document_get_node(c->doc, id); }
static const char *sc(yaml_node_t *n) { return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL; }

static size_t want_size(pctx *c, const char *path, yaml_node_t *v)
{
    const char *s = sc(v);
    char *end;
    errno = 0;
    long long x = s && *s ? strtoll(s, &end, 10) : -1;
    if (!s || !*s || errno || *end || x < 1 || x > (1LL << 32)) { fail(c, path, "must be a positive integer"); return 0; }
    return (size_t)x;
}

/* A list of strings; the pointers stay owned by the YAML document. */
static size_t want_list(pctx *c, const char *path, yaml_node_t *v, const char **out)
{
    if (!v || v->type != YAML_SEQUENCE_NODE) { fail(c, path, "must be a list of strings"); return 0; }
    size_t n = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        char fp[160];
        snprintf(fp, sizeof fp, "%s[%zu]", path, n);
        const char *s = sc(nd(c, *it));
        if (!s || !*s) { fail(c, fp, "must be a non-empty string"); return n; }
        if (n >= GUARD_MAX_LIST) { fail(c, path, "at most %d entries", GUARD_MAX_LIST); return n; }
        out[n++] = s;
    }
    return n;
}

static int want_action(pctx *c, const char *path, yaml_node_t *v)
{
    const char *s = sc(v);
    int a = s ? guard_action_parse(s) : -1;
    if (a < 0) fail(c, path, "must be block, mask, log or off");
    return a < 0 ? 0 : a;
}

/* lists (words/regex) of deny: and allow: */
typedef struct lists {
    const char *words[GUARD_MAX_LIST], *regex[GUARD_MAX_LIST];
    size_t nwords, nregex;
    int action;
} lists;

static void parse_lists(pctx *c, const char *path, yaml_node_t *v, lists *l, int with_action)
{
    if (v->type != YAML_MAPPING_NODE) { fail(c, path, "must be a mapping such as { words: [...], regex: [...] }"); return; }
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top && !c->failed; pr++) {
        const char *k = sc(nd(c, pr->key));
        yaml_node_t *x = nd(c, pr->value);
        char fp[160];
        snprintf(fp, sizeof fp, "%s.%s", path, k ? k : "?");
        if (k && !strcmp(k, "words")) l->nwords = want_list(c, fp, x, l->words);
        else if (k && !strcmp(k, "regex")) l->nregex = want_list(c, fp, x, l->regex);
        else if (k && with_action && !strcmp(k, "action")) l->action = want_action(c, fp, x);
        else fail(c, fp, "unknown field");
    }
}

static void parse_webhook(pctx *c, const char *path, yaml_node_t *v, guard_spec *s)
{
    if (v->type != YAML_MAPPING_NODE) { fail(c, path, "must be a mapping such as { url: http://..., timeout_ms: 200 }"); return; }
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top && !c->failed; pr++) {
        const char *k = sc(nd(c, pr->key));
        yaml_node_t *x = nd(c, pr->value);
        char fp[160];
        snprintf(fp, sizeof fp, "%s.%s", path, k ? k : "?");
        if (k && !strcmp(k, "url")) {
            s->webhook_url = sc(x);
            if (!s->webhook_url || (strncmp(s->webhook_url, "http://", 7) && strncmp(s->webhook_url, "https://", 8)))
                fail(c, fp, "must be an http:// or https:// URL");
        } else if (k && !strcmp(k, "timeout_ms")) {
            size_t t = want_size(c, fp, x);
            if (!c->failed && t > 60000) fail(c, fp, "must be at most 60000");
            s->webhook_timeout_ms = (long)t;
        } else if (k && !strcmp(k, "fail_open")) {
            const char *b = sc(x);
            if (b && (!strcmp(b, "true") || !strcmp(b, "false"))) s->webhook_fail_open = !strcmp(b, "true");
            else fail(c, fp, "must be true or false");
        } else fail(c, fp, "unknown field");
    }
    if (!c->failed && !s->webhook_url) { char fp[160]; snprintf(fp, sizeof fp, "%s.url", path); fail(c, fp, "is required"); }
}

static guard_policy *parse_policy(pctx *c, const char *path, yaml_node_t *m)
{
    guard_spec s;
    memset(&s, 0, sizeof s);
    guard_custom custom[64];
    size_t ncustom = 0;
    lists deny, allow;
    memset(&deny, 0, sizeof deny);
    memset(&allow, 0, sizeof allow);
    char fp[160];
    if (m->type != YAML_MAPPING_NODE) { fail(c, path, "must be a mapping"); return NULL; }
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top && !c->failed; pr++) {
        const char *k = sc(nd(c, pr->key));
        yaml_node_t *v = nd(c, pr->value);
        if (!k) { fail(c, path, "keys must be strings"); break; }
        snprintf(fp, sizeof fp, "%s.%s", path, k);
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < pr; q++) {
            const char *qk = sc(nd(c, q->key));
            if (qk && !strcmp(qk, k)) fail(c, fp, "appears twice in the same mapping");
        }
        if (c->failed) break;
        if (!strcmp(k, "name")) {
            s.name = sc(v);
            if (!s.name || !*s.name || strlen(s.name) > GUARD_NAME_MAX) fail(c, fp, "must be 1-%d characters", GUARD_NAME_MAX);
        } else if (!strcmp(k, "stages")) {
            const char *st[8];
            size_t n = want_list(c, fp, v, st);
            for (size_t i = 0; i < n && !c->failed; i++) {
                if (!strcmp(st[i], "input")) s.stages |= GUARD_INPUT;
                else if (!strcmp(st[i], "output")) s.stages |= GUARD_OUTPUT;
                else { char ip[180]; snprintf(ip, sizeof ip, "%s[%zu]", fp, i); fail(c, ip, "must be input or output"); }
            }
            if (!c->failed && !s.stages) fail(c, fp, "must name input, output or both");
        } else if (!strcmp(k, "detectors")) {
            if (v->type != YAML_MAPPING_NODE) { fail(c, fp, "must be a mapping such as { email: mask, card: block }"); break; }
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top && !c->failed; q++) {
                const char *dn = sc(nd(c, q->key));
                char dp[200];
                snprintf(dp, sizeof dp, "%s.%s", fp, dn ? dn : "?");
                int id = dn ? guard_detector_id(dn) : -1;
                if (id < 0) { fail(c, dp, "unknown detector (email, phone, card, iban, secrets, openai_key, anthropic_key, "
                                          "aws_key, github_token, slack_token, google_key, private_key, bearer, jwt)"); break; }
                int a = want_action(c, dp, nd(c, q->value));
                if (!strcmp(dn, "secrets")) {   /* every key and token kind */
                    for (const char *const *kn = (const char *const[]){ "private_key", "anthropic_key", "openai_key", "aws_key",
                             "github_token", "slack_token", "google_key", "bearer", "jwt", NULL }; *kn; kn++)
                        s.detector_action[guard_detector_id(*kn)] = a;
                } else s.detector_action[id] = a;
            }
        } else if (!strcmp(k, "custom")) {
            if (v->type != YAML_SEQUENCE_NODE) { fail(c, fp, "must be a list of { name, pattern, action }"); break; }
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top && !c->failed; it++) {
                char cp[200];
                snprintf(cp, sizeof cp, "%s[%zu]", fp, ncustom);
                if (ncustom >= 64) { fail(c, fp, "at most 64 custom patterns"); break; }
                guard_custom *cu = &custom[ncustom++];
                memset(cu, 0, sizeof *cu);
                cu->action = GUARD_MASK;
                yaml_node_t *cm = nd(c, *it);
                if (!cm || cm->type != YAML_MAPPING_NODE) { fail(c, cp, "must be a mapping { name, pattern, action }"); break; }
                for (yaml_node_pair_t *q = cm->data.mapping.pairs.start; q < cm->data.mapping.pairs.top && !c->failed; q++) {
                    const char *ck = sc(nd(c, q->key));
                    char kp[240];
                    snprintf(kp, sizeof kp, "%s.%s", cp, ck ? ck : "?");
                    const char *cv = sc(nd(c, q->value));
                    if (ck && !strcmp(ck, "name")) {
                        cu->name = cv;
                        int ok = cv && *cv && strlen(cv) <= 32;
                        for (const char *ch = cv; ok && *ch; ch++)
                            ok = (*ch >= 'a' && *ch <= 'z') || (*ch >= 'A' && *ch <= 'Z') || (*ch >= '0' && *ch <= '9') || *ch == '_' || *ch == '-';
                        if (!ok) fail(c, kp, "must be 1-32 letters, digits, _ or -");
                    } else if (ck && !strcmp(ck, "pattern")) {
                        cu->pattern = cv;
                        if (!cv || !*cv) fail(c, kp, "must be a non-empty regular expression");
                    } else if (ck && !strcmp(ck, "action")) cu->action = want_action(c, kp, nd(c, q->value));
                    else if (ck && !strcmp(ck, "placeholder")) {
                        cu->placeholder = cv;
                        if (!cv || strlen(cv) > GUARD_NAME_MAX) fail(c, kp, "must be a string of at most %d bytes", GUARD_NAME_MAX);
                    } else fail(c, kp, "unknown field");
                }
                if (!c->failed && (!cu->name || !cu->pattern)) fail(c, cp, "name and pattern are required");
            }
        } else if (!strcmp(k, "deny")) parse_lists(c, fp, v, &deny, 1);
        else if (!strcmp(k, "allow")) parse_lists(c, fp, v, &allow, 0);
        else if (!strcmp(k, "max_chars")) s.max_chars = want_size(c, fp, v);
        else if (!strcmp(k, "max_bytes")) s.max_bytes = want_size(c, fp, v);
        else if (!strcmp(k, "max_tokens")) s.max_tokens = want_size(c, fp, v);
        else if (!strcmp(k, "stream_window")) {
            s.stream_window = want_size(c, fp, v);
            if (!c->failed && (s.stream_window < 256 || s.stream_window > (1u << 20))) fail(c, fp, "must be 256-1048576");
        }
        else if (!strcmp(k, "webhook")) parse_webhook(c, fp, v, &s);
        else fail(c, fp, "unknown field");
    }
    if (c->failed) return NULL;
    if (!s.name) { snprintf(fp, sizeof fp, "%s.name", path); fail(c, fp, "is required"); return NULL; }
    if (s.webhook_url && s.stages && !(s.stages & GUARD_INPUT)) {   /* only requests are sent to webhooks */
        snprintf(fp, sizeof fp, "%s.webhook", path);
        fail(c, fp, "needs the input stage (webhooks check requests, not answers)");
        return NULL;
    }
    s.custom = custom; s.ncustom = ncustom;
    s.deny_words = deny.words; s.ndeny_words = deny.nwords;
    s.deny_regex = deny.regex; s.ndeny_regex = deny.nregex;
    s.deny_action = deny.action;
    s.allow_words = allow.words; s.nallow_words = allow.nwords;
    s.allow_regex = allow.regex; s.nallow_regex = allow.nregex;
    char why[256];
    guard_policy *p = guard_policy_compile(&s, why, sizeof why);
    if (!p) {
        /* the compiler names the list and index ("custom[1].pattern: ..."): prefix the policy's path */
        char *colon = strstr(why, ": ");
        if (colon) { *colon = '\0'; snprintf(fp, sizeof fp, "%s.%s", path, why); fail(c, fp, "%s", colon + 2); }
        else fail(c, path, "%s", why);
    }
    return p;
}

static int add_policy(guard_set *s, guard_policy *p)
{
    if (s->npolicies == s->cappolicies) {
        size_t cap = s->cappolicies ? s->cappolicies * 2 : 8;
        guard_policy **np = realloc(s->policies, cap * sizeof(guard_policy *));
        if (!np) return -1;
        s->policies = np;
        s->cappolicies = cap;
    }
    s->policies[s->npolicies++] = p;
    return 0;
}

guard_set *guard_set_new(void) { return calloc(1, sizeof(guard_set)); }

guard_set *guard_set_parse(yaml_document_t *doc, yaml_node_t *list, char *err, size_t errlen)
{
    pctx c = { .doc = doc, .err = err, .errlen = errlen };
    guard_set *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "guardrails: out of memory"); return NULL; }
    if (!list || list->type != YAML_SEQUENCE_NODE) { fail(&c, "guardrails", "must be a list of policies"); goto bad; }
    for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
        char path[64];
        snprintf(path, sizeof path, "guardrails[%zu]", s->npolicies);
        if (s->npolicies >= GUARD_MAX_POLICIES) { fail(&c, "guardrails", "at most %d policies", GUARD_MAX_POLICIES); goto bad; }
        guard_policy *p = parse_policy(&c, path, nd(&c, *it));
        if (!p) goto bad;
        for (size_t i = 0; i < s->npolicies; i++)
            if (!strcmp(guard_policy_name(s->policies[i]), guard_policy_name(p))) {
                char fp[80];
                snprintf(fp, sizeof fp, "%s.name", path);
                fail(&c, fp, "duplicate policy name \"%s\"", guard_policy_name(p));
                guard_policy_free(p);
                goto bad;
            }
        if (add_policy(s, p) < 0) { fail(&c, path, "out of memory"); guard_policy_free(p); goto bad; }
    }
    return s;
bad:
    guard_set_free(s);
    return NULL;
}

void guard_set_free(guard_set *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->npolicies; i++) guard_policy_free(s->policies[i]);
    free(s->policies);
    for (size_t i = 0; i < s->nbinds; i++) free(s->binds[i].owner);
    free(s->binds);
    free(s);
}

int guard_set_bind(guard_set *s, int kind, const char *owner, char *const *names, size_t n, const char *path,
                   char *err, size_t errlen)
{
    if (!n) return 0;
    if (n > GUARD_MAX_CHAIN) { snprintf(err, errlen, "%s: at most %d policies", path, GUARD_MAX_CHAIN); return -1; }
    binding b = { .kind = kind };
    for (size_t i = 0; i < n; i++) {
        const guard_policy *p = NULL;
        for (size_t j = 0; s && j < s->npolicies && !p; j++)
            if (!strcmp(guard_policy_name(s->policies[j]), names[i])) p = s->policies[j];
        if (!p) { snprintf(err, errlen, "%s[%zu]: unknown guardrail policy \"%s\"", path, i, names[i]); return -1; }
        b.p[b.n++] = p;
    }
    if (s->nbinds == s->capbinds) {
        size_t cap = s->capbinds ? s->capbinds * 2 : 8;
        binding *nb = realloc(s->binds, cap * sizeof *nb);
        if (!nb) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
        s->binds = nb;
        s->capbinds = cap;
    }
    if (!(b.owner = strdup(owner))) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
    s->binds[s->nbinds++] = b;
    return 0;
}

static void chain_add(guard_chain *out, const binding *b)
{
    for (size_t i = 0; i < b->n; i++) {
        int dup = 0;
        for (size_t j = 0; j < out->n && !dup; j++) dup = out->p[j] == b->p[i];
        if (!dup && out->n < GUARD_MAX_CHAIN) out->p[out->n++] = b->p[i];
    }
}

void guard_set_chain(const guard_set *s, const char *alias, const char *key_name, guard_chain *out)
{
    out->n = 0;
    if (!s || !s->nbinds) return;
    for (int kind = GUARD_BIND_MODEL; kind <= GUARD_BIND_KEY; kind++) {   /* the alias's first, then the key's */
        const char *who = kind == GUARD_BIND_MODEL ? alias : key_name;
        if (!who) continue;
        for (size_t i = 0; i < s->nbinds; i++)
            if (s->binds[i].kind == kind && !strcmp(s->binds[i].owner, who)) chain_add(out, &s->binds[i]);
    }
}

guard_set *guard_set_parse_text(const char *text, size_t len, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (len > (1u << 20)) { snprintf(err, errlen, "guardrails: larger than 1 MiB"); return NULL; }
    if (!yaml_parser_initialize(&parser)) { snprintf(err, errlen, "guardrails: out of memory"); return NULL; }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "guardrails: %s at column %zu", parser.problem ? parser.problem : "syntax error",
                 parser.problem_mark.column + 1);
        yaml_parser_delete(&parser);
        return NULL;
    }
    guard_set *s = guard_set_parse(&doc, yaml_document_get_root_node(&doc), err, errlen);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return s;
}

int guard_set_adopt(guard_set *dst, guard_set *src, int kind, const char *owner, char *err, size_t errlen)
{
    binding b = { .kind = kind };
    int rc = 0;
    for (size_t i = 0; i < src->npolicies; i++) {
        if (b.n < GUARD_MAX_CHAIN) b.p[b.n++] = src->policies[i];
        if (add_policy(dst, src->policies[i]) < 0) { guard_policy_free(src->policies[i]); rc = -1; }
    }
    src->npolicies = 0;   /* dst owns them now */
    guard_set_free(src);
    if (rc < 0) { snprintf(err, errlen, "out of memory"); return -1; }
    if (!b.n) return 0;
    if (dst->nbinds == dst->capbinds) {
        size_t cap = dst->capbinds ? dst->capbinds * 2 : 8;
        binding *nb = realloc(dst->binds, cap * sizeof *nb);
        if (!nb) { snprintf(err, errlen, "out of memory"); return -1; }
        dst->binds = nb;
        dst->capbinds = cap;
    }
    if (!(b.owner = strdup(owner))) { snprintf(err, errlen, "out of memory"); return -1; }
    dst->binds[dst->nbinds++] = b;
    return 0;
}
