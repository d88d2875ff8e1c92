/* guard: policies compiled into one PCRE2 pattern each; matching, masking
 * and incremental (stream) masking (guard.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "guard.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V_NONE, V_LUHN, V_IBAN, V_PHONE };

/* Built-in detectors. Each branch carries its own boundaries (lookbehind and
 * lookahead) so it never starts or ends inside a longer run of the same kind
 * (an id, a date, a long number). Order matters where two could start at the
 * same place: the more specific first. */
static const struct detector {
    const char *name, *placeholder;
    int         validator;
    const char *re;
} g_det[] = {
    /* the domain as one run checked by a lookbehind for its TLD: the pattern
     * then needs no "." literal, and PCRE2 skips ahead to an "@" */
    { "email", "[EMAIL]", V_NONE,
      "(?<![\\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9][A-Za-z0-9.-]{0,252}"
      "(?<=\\.[A-Za-z]{2}|\\.[A-Za-z]{3}|\\.[A-Za-z]{4}|\\.[A-Za-z]{5}|\\.[A-Za-z]{6}|\\.[A-Za-z]{7}|\\.[A-Za-z]{8})"
      "(?![\\w-])" },
    /* 13-19 digits: plain, 4-4-4-4(-3) or 4-6-4/5 with one kind of separator */
    { "card", "[CARD]", V_LUHN,
      "(?<![\\w.-])(?:[2-6]\\d{12,18}|[2-6]\\d{3}(?<gwcs>[ -])\\d{4}\\k<gwcs>\\d{4}\\k<gwcs>\\d{4}(?:\\k<gwcs>\\d{3})?"
      "|3\\d{3}(?<gwca>[ -])\\d{6}\\k<gwca>\\d{4,5})(?![\\w])" },
    { "iban", "[IBAN]", V_IBAN,
      "(?<![A-Za-z0-9])[A-Z]{2}\\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])" },
    /* international (+CC ...), North American (555) 123-4567 / 555-123-4567 /
     * 1-800-555-0199, national trunk-prefixed (020 7946 0958, 01 23 45 67 89):
     * separators required for the national forms so bare numbers and ids
     * never match */
    { "phone", "[PHONE]", V_PHONE,
      "(?<![\\w+.\\-/:])(?<!\\d[ .-])(?:\\+[1-9]\\d{0,2}[ .-]?(?:\\(\\d{1,4}\\)[ .-]?)?\\d{1,4}(?:[ .-]?\\d{2,4}){1,4}"
      "|(?:1[ .-]?)?\\(\\d{3}\\) ?\\d{3}[ .-]\\d{4}|(?:1([ .-]))?\\d{3}([ .-])\\d{3}\\g{-1}\\d{4}"
      "|0\\d{2,4}[ -]\\d{3,4}[ -]?\\d{3,4}|0[1-9](?:([ .])\\d{2}){4})"
      "(?![\\w/:])(?![ .-]\\d)" },
    { "private_key", "[SECRET]", V_NONE,
      "-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----[A-Za-z0-9+/=\\s:,-]{0,8192}?-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----" },
    { "anthropic_key", "[SECRET]", V_NONE, "(?<![\\w-])sk-ant-[A-Za-z0-9_-]{20,300}" },
    { "openai_key", "[SECRET]", V_NONE, "(?<![\\w-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,300}" },
    { "aws_key", "[SECRET]", V_NONE, "(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])" },
    { "github_token", "[SECRET]", V_NONE, "(?<![\\w])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})" },
    { "slack_token", "[SECRET]", V_NONE, "(?<![\\w])xox[abposr]-[A-Za-z0-9-]{10,250}" },
    { "google_key", "[SECRET]", V_NONE, "(?<![\\w-])AIza[0-9A-Za-z_-]{35}(?![\\w-])" },
    { "bearer", "[SECRET]", V_NONE, "(?<![A-Za-z0-9])[Bb]earer[ \\t]+[A-Za-z0-9._~+/-]{16,4096}=*" },
    { "jwt", "[SECRET]", V_NONE, "(?<![\\w-])eyJ[A-Za-z0-9_-]{8,4096}\\.[A-Za-z0-9_-]{8,8192}\\.[A-Za-z0-9_-]{8,4096}" },
};
#define NDET (sizeof g_det / sizeof g_det[0])

#define GUARD_MAX_SUBS 16

typedef struct guard_rule {
    char name[GUARD_NAME_MAX + 8];   /* "email", "custom.<name>", "deny" */
    char placeholder[GUARD_NAME_MAX + 8];
    int  action, validator, is_deny;
} guard_rule;

struct guard_policy {
    char       *name;
    int         stages;
    guard_rule  rules[GUARD_MAX_RULES];
    size_t      nrules;
    pcre2_code *sub[GUARD_MAX_SUBS];  /* one per built-in detector, one for custom patterns, one for the deny list */
    char        sub_at[GUARD_MAX_SUBS];  /* a character every match of the sub-pattern has (0: none known) */
    uint8_t     sub_first[GUARD_MAX_SUBS][32];   /* bytes a match can start with (PCRE2's start bitmap) */
    int         sub_has_first[GUARD_MAX_SUBS];
    size_t      nsub;
    pcre2_code *allow;
    size_t      max_chars, max_bytes, max_tokens, window;
    char       *webhook_url;
    long        webhook_timeout_ms;
    int         webhook_fail_open;
};

int guard_detector_id(const char *name)
{
    if (!strcmp(name, "secrets")) return (int)NDET;
    for (size_t i = 0; i < NDET; i++) if (!strcmp(name, g_det[i].name)) return (int)i;
    return -1;
}

const char *guard_action_name(int a)
{
    static const char *const n[] = { "none", "log", "mask", "block" };
    return a >= 0 && a <= GUARD_BLOCK ? n[a] : "none";
}

int guard_action_parse(const char *s)
{
    if (!strcmp(s, "log")) return GUARD_LOG;
    if (!strcmp(s, "mask")) return GUARD_MASK;
    if (!strcmp(s, "block")) return GUARD_BLOCK;
    if (!strcmp(s, "off")) return GUARD_NONE;
    return -1;
}

/* ---- validators ---- */

int guard_luhn_ok(const char *s, size_t n)
{
    int sum = 0, digits = 0;
    for (size_t i = n; i-- > 0;) {
        char c = s[i];
        if (c == ' ' || c == '-') continue;
        if (c < '0' || c > '9') return 0;
        int d = c - '0';
        if (digits++ & 1) { d *= 2; if (d > 9) d -= 9; }
        sum += d;
    }
    return digits >= 13 && digits <= 19 && sum % 10 == 0;
}

/* Registry lengths of the countries that issue most IBANs; others 15-34. */
static int iban_length(const char cc[2])
{
    static const struct { char cc[3]; int len; } t[] = {
        {"AD",24},{"AT",20},{"BE",16},{"BG",22},{"CH",21},{"CY",28},{"CZ",24},{"DE",22},{"DK",18},{"EE",20},
        {"ES",24},{"FI",18},{"FR",27},{"GB",22},{"GR",27},{"HR",21},{"HU",28},{"IE",22},{"IS",26},{"IT",27},
        {"LI",21},{"LT",20},{"LU",20},{"LV",21},{"MC",27},{"MT",31},{"NL",18},{"NO",15},{"PL",28},{"PT",25},
        {"RO",24},{"SE",24},{"SI",19},{"SK",24},{"SM",27},{"TR",26},{"SA",24},{"AE",23},{"IL",23},{"BR",29},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].cc[0] == cc[0] && t[i].cc[1] == cc[1]) return t[i].len;
    return 0;
}

int guard_iban_ok(const char *s, size_t n)
{
    char c[40];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') continue;
        if (len >= sizeof c) return 0;
        c[len++] = s[i];
    }
    if (len < 15 || len > 34) return 0;
    int want = iban_length(c);
    if (want && (size_t)want != len) return 0;
    /* mod 97 of the rearranged number (first four characters moved to the end, letters as 10-35), digit by digit */
    unsigned rem = 0;
    for (size_t k = 0; k < len; k++) {
        char ch = c[(k + 4) % len];
        if (ch >= '0' && ch <= '9') rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
        else if (ch >= 'A' && ch <= 'Z') rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
        else return 0;
    }
    return rem == 1;
}

static int phone_ok(const char *s, size_t n)
{
    int d = 0;
    for (size_t i = 0; i < n; i++) d += s[i] >= '0' && s[i] <= '9';
    return d >= (s[0] == '+' ? 8 : 10) && d <= 15;
}

/* ---- compile ---- */

/* A literal as a pattern: every ASCII punctuation escaped. */
static void put_literal(buf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) buf_putc(b, '\\');
        buf_putc(b, (char)c);
    }
}

static pcre2_code *compile(const char *re, size_t len, uint32_t opts, char *err, size_t errlen, const char *field)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, len, PCRE2_UTF | opts, &ec, &eo, NULL);
    if (!c) {
        PCRE2_UCHAR m[160];
        pcre2_get_error_message(ec, m, sizeof m);
        snprintf(err, errlen, "%s: %s at offset %zu", field, (const char *)m, (size_t)eo);
        return NULL;
    }
    /* JIT is an optimization: the interpreter still matches if it is unavailable */
    (void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);
    return c;
}

static int add_rule(guard_policy *p, buf_t *re, const char *name, const char *ph, int action, int validator,
                    int is_deny, char *err, size_t errlen)
{
    if (p->nrules >= GUARD_MAX_RULES || p->nrules >= 254) { snprintf(err, errlen, "too many patterns (at most %d)", GUARD_MAX_RULES); return -1; }
    guard_rule *r = &p->rules[p->nrules];
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->placeholder, sizeof r->placeholder, "%s", ph);
    r->action = action;
    r->validator = validator;
    r->is_deny = is_deny;
    p->nrules++;
    /* the callout names the branch that matched and validates it (a refusal backtracks) */
    buf_printf(re, "(?C%zu))", p->nrules);
    return 0;
}

static int add_sub(guard_policy *p, buf_t *re, const char *what, char *err, size_t errlen)
{
    if (re->oom) { snprintf(err, errlen, "out of memory"); return -1; }
    if (p->nsub >= GUARD_MAX_SUBS) { snprintf(err, errlen, "too many pattern groups"); return -1; }
    size_t k = p->nsub;
    if (!(p->sub[k] = compile(re->data, re->len, 0, err, errlen, what))) return -1;
    p->nsub++;
    /* where a match can start, if PCRE2 knows: short texts (stream deltas)
     * then skip the sub-pattern without a match call */
    const uint8_t *bm = NULL;
    uint32_t fcu = 0, ftype = 0;
    if (pcre2_pattern_info(p->sub[k], PCRE2_INFO_FIRSTCODETYPE, &ftype) == 0 && ftype == 1 &&
        pcre2_pattern_info(p->sub[k], PCRE2_INFO_FIRSTCODEUNIT, &fcu) == 0 && fcu < 256) {
        /* it may be caseless, and caseless ASCII letters also match some
         * non-ASCII characters (K: the Kelvin sign): both cases and every
         * non-ASCII byte */
        memset(p->sub_first[k], 0, 32);
        memset(p->sub_first[k] + 16, 0xFF, 16);
        uint32_t lo = fcu >= 'A' && fcu <= 'Z' ? fcu + 32 : fcu, up = fcu >= 'a' && fcu <= 'z' ? fcu - 32 : fcu;
        p->sub_first[k][lo >> 3] |= (uint8_t)(1u << (lo & 7));
        p->sub_first[k][up >> 3] |= (uint8_t)(1u << (up & 7));
        p->sub_has_first[k] = 1;
    } else if (pcre2_pattern_info(p->sub[k], PCRE2_INFO_FIRSTBITMAP, &bm) == 0 && bm) {
        memcpy(p->sub_first[k], bm, 32);
        p->sub_has_first[k] = 1;
    }
    return 0;
}

static int bad_custom(const char *pat)
{
    return strstr(pat, "(?C") || strstr(pat, "(*");   /* callouts and verbs would confuse the branch bookkeeping */
}

guard_policy *guard_policy_compile(const guard_spec *s, char *err, size_t errlen)
{
    guard_policy *p = calloc(1, sizeof *p);
    buf_t re, al;
    buf_init(&re); buf_init(&al);
    char field[96];
    if (!p || !(p->name = strdup(s->name ? s->name : ""))) { snprintf(err, errlen, "out of memory"); goto fail; }
    p->stages = s->stages ? s->stages : GUARD_INPUT | GUARD_OUTPUT;
    p->max_chars = s->max_chars; p->max_bytes = s->max_bytes; p->max_tokens = s->max_tokens;
    p->window = s->stream_window ? s->stream_window : 16384;
    if (s->webhook_url && !(p->webhook_url = strdup(s->webhook_url))) { snprintf(err, errlen, "out of memory"); goto fail; }
    p->webhook_timeout_ms = s->webhook_timeout_ms > 0 ? s->webhook_timeout_ms : 1000;
    p->webhook_fail_open = s->webhook_fail_open;
    /* One pattern per built-in detector keeps PCRE2's own prefilters (a
     * required "@", a literal "sk-") that one big alternation would lose;
     * scan() merges their matches leftmost-first in one pass over the text. */
    for (size_t i = 0; i < NDET; i++) {
        int a = s->detector_action[i];
        if (!a) continue;
        buf_reset(&re);
        buf_puts(&re, "(?:");
        buf_puts(&re, g_det[i].re);
        if (add_rule(p, &re, g_det[i].name, g_det[i].placeholder, a, g_det[i].validator, 0, err, errlen) < 0) goto fail;
        if (add_sub(p, &re, g_det[i].name, err, errlen) < 0) goto fail;
        if (!strcmp(g_det[i].name, "email")) p->sub_at[p->nsub - 1] = '@';
    }
    buf_reset(&re);
    for (size_t i = 0; i < s->ncustom; i++) {
        const guard_custom *c = &s->custom[i];
        snprintf(field, sizeof field, "custom[%zu].pattern", i);
        if (bad_custom(c->pattern)) { snprintf(err, errlen, "%s: callouts and (*VERBS) are not allowed", field); goto fail; }
        pcre2_code *one = compile(c->pattern, strlen(c->pattern), 0, err, errlen, field);   /* its own error offset */
        if (!one) goto fail;
        pcre2_code_free(one);
        char name[GUARD_NAME_MAX + 8], ph[GUARD_NAME_MAX + 8];
        snprintf(name, sizeof name, "custom.%s", c->name);
        if (c->placeholder) snprintf(ph, sizeof ph, "%s", c->placeholder);
        else {
            int n = snprintf(ph, sizeof ph, "[%s]", c->name);
            for (int k = 1; k < n - 1; k++) if (ph[k] >= 'a' && ph[k] <= 'z') ph[k] = (char)(ph[k] - 32);
        }
        buf_puts(&re, re.len ? "|(?:(?:" : "(?:(?:");
        buf_puts(&re, c->pattern);
        buf_putc(&re, ')');
        if (add_rule(p, &re, name, ph, c->action, V_NONE, 0, err, errlen) < 0) goto fail;
    }
    if (re.len && add_sub(p, &re, "custom", err, errlen) < 0) goto fail;
    buf_reset(&re);
    int deny_action = s->deny_action ? s->deny_action : GUARD_BLOCK;
    for (size_t i = 0; i < s->ndeny_words; i++) {
        buf_puts(&re, re.len ? "|(?:(?<!\\w)(?i:" : "(?:(?<!\\w)(?i:");
        put_literal(&re, s->deny_words[i]);
        buf_puts(&re, ")(?!\\w)");
        if (add_rule(p, &re, "deny", "[DENIED]", deny_action, V_NONE, 1, err, errlen) < 0) goto fail;
    }
    for (size_t i = 0; i < s->ndeny_regex; i++) {
        snprintf(field, sizeof field, "deny.regex[%zu]", i);
        if (bad_custom(s->deny_regex[i])) { snprintf(err, errlen, "%s: callouts and (*VERBS) are not allowed", field); goto fail; }
        pcre2_code *one = compile(s->deny_regex[i], strlen(s->deny_regex[i]), 0, err, errlen, field);
        if (!one) goto fail;
        pcre2_code_free(one);
        buf_puts(&re, re.len ? "|(?:(?:" : "(?:(?:");
        buf_puts(&re, s->deny_regex[i]);
        buf_putc(&re, ')');
        if (add_rule(p, &re, "deny", "[DENIED]", deny_action, V_NONE, 1, err, errlen) < 0) goto fail;
    }
    if (re.len && add_sub(p, &re, "deny", err, errlen) < 0) goto fail;
    for (size_t i = 0; i < s->nallow_words; i++) {
        buf_puts(&al, al.len ? "|(?i:" : "(?i:");
        put_literal(&al, s->allow_words[i]);
        buf_putc(&al, ')');
    }
    for (size_t i = 0; i < s->nallow_regex; i++) {
        snprintf(field, sizeof field, "allow.regex[%zu]", i);
        pcre2_code *one = compile(s->allow_regex[i], strlen(s->allow_regex[i]), 0, err, errlen, field);
        if (!one) goto fail;
        pcre2_code_free(one);
        buf_puts(&al, al.len ? "|(?:" : "(?:");
        buf_puts(&al, s->allow_regex[i]);
        buf_putc(&al, ')');
    }
    if (al.oom) { snprintf(err, errlen, "out of memory"); goto fail; }
    if (al.len && !(p->allow = compile(al.data, al.len, PCRE2_ANCHORED | PCRE2_ENDANCHORED, err, errlen, "allow"))) goto fail;
    buf_free(&re); buf_free(&al);
    return p;
fail:
    buf_free(&re); buf_free(&al);
    guard_policy_free(p);
    return NULL;
}

void guard_policy_free(guard_policy *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nsub; i++) pcre2_code_free(p->sub[i]);
    pcre2_code_free(p->allow);
    free(p->webhook_url);
    free(p->name);
    free(p);
}

const char *guard_policy_name(const guard_policy *p) { return p->name; }
int guard_policy_stages(const guard_policy *p) { return p->stages; }
const char *guard_policy_webhook(const guard_policy *p, long *timeout_ms, int *fail_open)
{
    if (timeout_ms) *timeout_ms = p->webhook_timeout_ms;
    if (fail_open) *fail_open = p->webhook_fail_open;
    return p->webhook_url;
}

/* ---- results ---- */

void guard_result_add(guard_result *r, int stage, const char *detector, int action, int is_deny)
{
    if (action > r->action) r->action = action;
    if (action == GUARD_BLOCK && !r->block_detector) { r->block_detector = detector; r->block_is_deny = is_deny; }
    for (size_t i = 0; i < r->nhits; i++) {
        guard_hit *h = &r->hits[i];
        if (h->stage == stage && h->action == action && !strcmp(h->detector, detector)) { h->count++; return; }
    }
    if (r->nhits < GUARD_MAX_HITS)
        r->hits[r->nhits++] = (guard_hit){ .stage = (uint8_t)stage, .action = (uint8_t)action, .detector = detector, .count = 1 };
}

void guard_result_summary(const guard_result *r, char *out, size_t len)
{
    buf_t b;
    buf_init(&b);
    for (int stage = GUARD_INPUT; stage <= GUARD_OUTPUT; stage++)
        for (int a = GUARD_BLOCK; a >= GUARD_LOG; a--) {
            int first = 1;
            for (size_t i = 0; i < r->nhits; i++) {
                const guard_hit *h = &r->hits[i];
                if (h->stage != stage || h->action != a) continue;
                if (first) {
                    if (b.len) buf_putc(&b, ';');
                    buf_puts(&b, stage == GUARD_INPUT ? "in:" : "out:");
                    buf_puts(&b, guard_action_name(a));
                    buf_putc(&b, ':');
                } else buf_putc(&b, ',');
                buf_puts(&b, h->detector);
                first = 0;
            }
        }
    size_t n = 0;
    if (len) {
        n = b.len < len ? b.len : len - 1;
        if (n < b.len) while (n > 0 && b.data[n] != ',' && b.data[n] != ';') n--;   /* cut on a name */
        if (n) memcpy(out, b.data, n);
        out[n] = '\0';
    }
    buf_free(&b);
}

/* ---- matching ---- */

typedef struct match_ctx {
    const guard_policy *p;
    int rule;
} match_ctx;

static int on_callout(pcre2_callout_block *cb, void *ud)
{
    match_ctx *m = ud;
    if (cb->callout_number < 1 || cb->callout_number > m->p->nrules) return 1;
    const guard_rule *r = &m->p->rules[cb->callout_number - 1];
    const char *s = (const char *)cb->subject + cb->start_match;
    size_t n = cb->current_position - cb->start_match;
    int ok = r->validator == V_LUHN ? guard_luhn_ok(s, n)
           : r->validator == V_IBAN ? guard_iban_ok(s, n)
           : r->validator == V_PHONE ? phone_ok(s, n) : 1;
    if (!ok) return 1;   /* not this one: backtrack, other branches and positions still try */
    m->rule = (int)cb->callout_number - 1;
    return 0;
}

/* Per thread: every worker matches on its own loop. */
static __thread pcre2_match_context *t_mctx;
static __thread pcre2_match_data *t_md, *t_md2;
static __thread pcre2_jit_stack *t_jit;

static int tls_ready(void)
{
    if (t_md2) return 0;
    if (!t_mctx && !(t_mctx = pcre2_match_context_create(NULL))) return -1;
    if (!t_jit && (t_jit = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL))) pcre2_jit_stack_assign(t_mctx, NULL, t_jit);
    pcre2_set_match_limit(t_mctx, 1000000);
    pcre2_set_depth_limit(t_mctx, 10000);
    if (!t_md && !(t_md = pcre2_match_data_create(16, NULL))) return -1;
    if (!(t_md2 = pcre2_match_data_create(4, NULL))) return -1;
    return 0;
}

static int allowed(const guard_policy *p, const char *s, size_t n)
{
    if (!p->allow) return 0;
    pcre2_set_callout(t_mctx, NULL, NULL);
    return pcre2_match(p->allow, (PCRE2_SPTR)s, n, 0, PCRE2_NO_UTF_CHECK, t_md2, t_mctx) >= 0;
}

static size_t next_char(const char *s, size_t n, size_t i)
{
    i++;
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    return i;
}

/* The next match (or partial match) of one sub-pattern at or after off. */
/* Where a sub-pattern's next match can begin at the earliest: for emails,
 * at most 64 local-part characters before the next "@" (PCRE2 would
 * otherwise try every position up to it). */
static size_t sub_skip(const guard_policy *p, size_t k, const char *s, size_t n, size_t off, int partial)
{
    if (!p->sub_at[k] || off >= n) return off;
    const char *at = memchr(s + off, p->sub_at[k], n - off);
    if (!at && !partial) return n;
    size_t i = at ? (size_t)(at - s) : n;   /* partial: a match may still start in the text's last word */
    size_t lim = i > off + 64 ? i - 64 : off;
    while (i > lim) {
        unsigned char c = (unsigned char)s[i - 1];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
              c == '%' || c == '+' || c == '-')) break;
        i--;
    }
    return i;
}

typedef struct sub_state {
    size_t ms, me;
    int    kind;   /* 0 not looked for yet, 1 match, 2 partial (ms: where it starts), 3 none */
    int    rule;
} sub_state;

static int sub_next(const guard_policy *p, size_t k, const char *s, size_t n, size_t off, int partial, sub_state *st)
{
    match_ctx m = { .p = p };
    for (;;) {
        off = sub_skip(p, k, s, n, off, partial);
        if (p->sub_has_first[k]) {   /* no byte a match can start with: none, not even partial */
            const uint8_t *fb = p->sub_first[k];
            while (off < n && !(fb[(unsigned char)s[off] >> 3] & (1u << ((unsigned char)s[off] & 7)))) off++;
            if (off >= n) { st->kind = 3; return 0; }
        }
        m.rule = -1;
        pcre2_set_callout(t_mctx, on_callout, &m);
        int rc = pcre2_match(p->sub[k], (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK | (partial ? PCRE2_PARTIAL_HARD : 0),
                             t_md, t_mctx);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t_md);
        if (rc == PCRE2_ERROR_NOMATCH) { st->kind = 3; return 0; }
        if (rc == PCRE2_ERROR_PARTIAL) { st->kind = 2; st->ms = ov[0]; return 0; }
        if (rc < 0) return -1;   /* match or depth limit */
        if (ov[1] <= ov[0] || m.rule < 0) {   /* empty: try from the next character */
            if (ov[0] >= n) { st->kind = 3; return 0; }
            off = next_char(s, n, ov[0]);
            continue;
        }
        st->kind = 1; st->ms = ov[0]; st->me = ov[1]; st->rule = m.rule;
        return 0;
    }
}

/* One policy over s[start..n) (s[0..start) is lookbehind context only):
 * appends the text up to *hold (masked) to out; with partial, *hold is where
 * a possible match begins that more text could complete (else n). The
 * sub-patterns' matches are merged leftmost first (ties: detector order);
 * a cached next match stays valid until a chosen match passes its start, so
 * each sub-pattern reads the text about once. */
static int scan(const guard_policy *p, int stage, const char *s, size_t n, size_t start, int partial,
                buf_t *out, size_t *hold, guard_result *res)
{
    size_t off = start, emitted = start;
    sub_state st[GUARD_MAX_SUBS];
    memset(st, 0, sizeof st);
    *hold = n;
    if (p->nsub && tls_ready() < 0) return -1;
    while (p->nsub && off <= n) {
        int best = -1;
        for (size_t k = 0; k < p->nsub; k++) {
            if (st[k].kind == 0 || ((st[k].kind == 1 || st[k].kind == 2) && st[k].ms < off)) {
                if (sub_next(p, k, s, n, off, partial, &st[k]) < 0) {   /* pathological input: refused, never passed unchecked */
                    guard_result_add(res, stage, "guard_error", GUARD_BLOCK, 0);
                    st[k].kind = 3;
                }
            }
            if (st[k].kind == 3) continue;
            if (best < 0 || st[k].ms < st[best].ms || (st[k].ms == st[best].ms && st[k].kind == 2 && st[best].kind == 1))
                best = (int)k;
        }
        if (best < 0) break;
        const sub_state *b = &st[best];
        if (b->kind == 2) { *hold = b->ms < emitted ? emitted : b->ms; break; }
        const guard_rule *r = &p->rules[b->rule];
        if (r->action != GUARD_NONE && !allowed(p, s + b->ms, b->me - b->ms)) {
            guard_result_add(res, stage, r->name, r->action, r->is_deny);
            if (r->action == GUARD_MASK) {
                buf_append(out, s + emitted, b->ms - emitted);
                buf_puts(out, r->placeholder);
                emitted = b->me;
            }
        }
        off = b->me;
    }
    if (*hold > emitted) buf_append(out, s + emitted, *hold - emitted);
    return out->oom ? -1 : 0;
}

int guard_text(const guard_chain *c, int stage, const char *s, size_t n, buf_t *out, guard_result *res)
{
    buf_t a, b;
    buf_init(&a); buf_init(&b);
    const char *cur = s;
    size_t curlen = n;
    int changed = 0;
    for (size_t i = 0; i < c->n; i++) {
        const guard_policy *p = c->p[i];
        if (!(p->stages & stage) || !p->nsub) continue;
        buf_t *dst = cur == a.data && a.data ? &b : &a;
        buf_reset(dst);
        size_t hold;
        if (scan(p, stage, cur, curlen, 0, 0, dst, &hold, res) < 0) { buf_free(&a); buf_free(&b); return -1; }
        if (dst->len > 2 * curlen + 65536) {   /* placeholders longer than many tiny matches: bounded, refused */
            guard_result_add(res, stage, "too_many_matches", GUARD_BLOCK, 0);
            break;
        }
        if (dst->len != curlen || memcmp(dst->data ? dst->data : "", cur, curlen)) {
            changed = 1;
            cur = dst->data ? dst->data : "";
            curlen = dst->len;
        }
    }
    if (changed) {
        buf_reset(out);
        buf_append(out, cur, curlen);
    }
    buf_free(&a); buf_free(&b);
    return out->oom ? -1 : changed;
}

const guard_policy *guard_caps_exceeded(const guard_chain *c, size_t bytes, size_t chars, const char **what)
{
    for (size_t i = 0; i < c->n; i++) {
        const guard_policy *p = c->p[i];
        if (!(p->stages & GUARD_INPUT)) continue;
        if (p->max_bytes && bytes > p->max_bytes) { *what = "max_bytes"; return p; }
        if (p->max_chars && chars > p->max_chars) { *what = "max_chars"; return p; }
        if (p->max_tokens && (chars + 3) / 4 > p->max_tokens) { *what = "max_tokens"; return p; }
    }
    return NULL;
}

/* ---- streams ---- */

#define STREAM_CTX 32   /* bytes of released text kept for lookbehinds */

void guard_stream_init(guard_stream *g, const guard_chain *c, guard_result *res)
{
    memset(g, 0, sizeof *g);
    g->chain = c;
    g->res = res;
    for (size_t i = 0; i < GUARD_MAX_CHAIN; i++) buf_init(&g->st[i].buf);
    buf_init(&g->tmp);
}

void guard_stream_free(guard_stream *g)
{
    for (size_t i = 0; i < GUARD_MAX_CHAIN; i++) buf_free(&g->st[i].buf);
    buf_free(&g->tmp);
}

int guard_stream_pending(const guard_stream *g)
{
    for (size_t i = 0; i < g->chain->n && i < GUARD_MAX_CHAIN; i++)
        if (g->st[i].buf.len > g->st[i].ctx) return 1;
    return 0;
}

/* One stage: its held text plus s goes through the policy; what can be
 * released lands in out, the rest stays (after a little context). */
static int stage_run(guard_stream *g, size_t i, const char *s, size_t n, int final, buf_t *out)
{
    const guard_policy *p = g->chain->p[i];
    guard_stream_stage *st = &g->st[i];
    if (buf_append(&st->buf, s, n) < 0) return -1;
    const char *d = st->buf.data ? st->buf.data : "";
    size_t len = st->buf.len, hold;
    size_t mark = out->len;
    guard_result scratch = *g->res;
    if (scan(p, GUARD_OUTPUT, d, len, st->ctx, !final, out, &hold, &scratch) < 0) return -1;
    if (!final && len - hold > p->window) {   /* held too long: decide on what is there */
        out->len = mark;
        scratch = *g->res;
        if (scan(p, GUARD_OUTPUT, d, len, st->ctx, 0, out, &hold, &scratch) < 0) return -1;
    }
    *g->res = scratch;
    /* keep a few bytes of context (on a character boundary) and the held text */
    size_t c0 = hold > STREAM_CTX ? hold - STREAM_CTX : 0;
    while (c0 < hold && ((unsigned char)d[c0] & 0xC0) == 0x80) c0++;
    if (st->buf.data) {   /* NULL: nothing was ever held */
        memmove(st->buf.data, d + c0, len - c0);
        st->buf.len = len - c0;
        st->buf.data[st->buf.len] = '\0';
    }
    st->ctx = hold - c0;
    return 0;
}

static int stream_run(guard_stream *g, const char *s, size_t n, int final, buf_t *out)
{
    buf_t carry[2];
    buf_init(&carry[0]); buf_init(&carry[1]);
    const char *in = s;
    size_t inlen = n;
    int rc = 0, k = 0;
    size_t last = 0, nst = 0;
    for (size_t i = 0; i < g->chain->n && i < GUARD_MAX_CHAIN; i++)
        if (g->chain->p[i]->stages & GUARD_OUTPUT && g->chain->p[i]->nsub) { last = i; nst++; }
    for (size_t i = 0; i < g->chain->n && i < GUARD_MAX_CHAIN && nst; i++) {
        const guard_policy *p = g->chain->p[i];
        if (!(p->stages & GUARD_OUTPUT) || !p->nsub) continue;
        buf_t *dst = i == last ? out : &carry[k];
        if (i != last) buf_reset(dst);
        if ((rc = stage_run(g, i, in, inlen, final, dst)) < 0) break;
        if (i == last) break;
        in = dst->data ? dst->data : "";
        inlen = dst->len;
        k ^= 1;
    }
    if (!nst) buf_append(out, s, n);
    buf_free(&carry[0]); buf_free(&carry[1]);
    return rc < 0 || out->oom ? -1 : 0;
}

int guard_stream_feed(guard_stream *g, const char *s, size_t n, buf_t *out) { return stream_run(g, s, n, 0, out); }
int guard_stream_flush(guard_stream *g, buf_t *out) { return stream_run(g, "", 0, 1, out); }
