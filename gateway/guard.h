/* guard: guardrail policies and their matcher.
 *
 * A policy's detectors (email, phone, card, iban, API keys and secrets),
 * custom patterns and deny list are compiled ONCE, at config load, into one
 * PCRE2 pattern (JIT): an alternation whose branches each end in a callout
 * that names the branch and runs its validator (Luhn for cards, mod-97 for
 * IBANs, digit counts for phones), so one pass over the text finds every
 * kind and a candidate that fails validation simply does not match. The
 * allow list is a second, anchored pattern a hit must not match whole.
 *
 * guard_text() applies a chain of policies to one string (masking into a new
 * buffer); guard_stream masks text that arrives in pieces, holding back only
 * the tail that could still be the start of a match (PCRE2 partial matching,
 * bounded by a window) so a match split over chunks is still found.
 * Matched text is never stored or logged: only the detector's name.
 */
#ifndef GW_GUARD_H
#define GW_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum { GUARD_NONE, GUARD_LOG, GUARD_MASK, GUARD_BLOCK };          /* actions, in increasing severity */
enum { GUARD_INPUT = 1, GUARD_OUTPUT = 2 };                          /* stages (bits) */

#define GUARD_MAX_RULES   96     /* branches of one policy's pattern */
#define GUARD_MAX_CHAIN   8      /* policies applied to one request */
#define GUARD_NAME_MAX    48
#define GUARD_MAX_HITS    16     /* distinct (stage, detector, action) kept per request */

typedef struct guard_policy guard_policy;

/* A policy as configured (plain data; guard_policy_compile builds it). */
typedef struct guard_custom {
    const char *name;            /* reported as custom.<name> */
    const char *pattern;         /* PCRE2 syntax */
    int         action;
    const char *placeholder;     /* NULL: "[<NAME>]" */
} guard_custom;

typedef struct guard_spec {
    const char  *name;
    int          stages;                    /* GUARD_INPUT | GUARD_OUTPUT */
    int          detector_action[16];       /* by guard_detector_id(); GUARD_NONE: off */
    const guard_custom *custom; size_t ncustom;
    const char *const *deny_words; size_t ndeny_words;     /* literal, case-insensitive, whole words */
    const char *const *deny_regex; size_t ndeny_regex;
    int          deny_action;               /* default GUARD_BLOCK */
    const char *const *allow_words; size_t nallow_words;   /* a hit equal to one (any case) is not flagged */
    const char *const *allow_regex; size_t nallow_regex;   /* ... or matching one whole */
    size_t       max_chars, max_bytes, max_tokens;         /* 0: no cap */
    size_t       stream_window;             /* bytes a stream may hold back (0: 4096) */
    const char  *webhook_url;               /* input stage; NULL: none */
    long         webhook_timeout_ms;
    int          webhook_fail_open;
} guard_spec;

/* Detector names in config and reports: "email", "phone", "card", "iban",
 * "secrets" (every key kind below) or one kind: "openai_key", ... -1: unknown. */
int         guard_detector_id(const char *name);
const char *guard_action_name(int action);
int         guard_action_parse(const char *s);   /* -1 unknown */

/* NULL with the reason in err; for a bad pattern it names the field
 * ("custom[1].pattern") and PCRE2's message and offset. */
guard_policy *guard_policy_compile(const guard_spec *s, char *err, size_t errlen);
void          guard_policy_free(guard_policy *p);
const char   *guard_policy_name(const guard_policy *p);
int           guard_policy_stages(const guard_policy *p);
const char   *guard_policy_webhook(const guard_policy *p, long *timeout_ms, int *fail_open);

/* What a request's guards decided, without any matched text. */
typedef struct guard_hit {
    uint8_t     stage, action;
    const char *detector;        /* static or owned by the policy (lives with the config) */
    uint32_t    count;
} guard_hit;

typedef struct guard_result {
    int         action;          /* the most severe of all hits */
    const char *block_detector;  /* the first hit whose action is block */
    int         block_is_deny;   /* it came from a deny list (403) */
    guard_hit   hits[GUARD_MAX_HITS];
    size_t      nhits;
    size_t      chars, bytes;    /* input text seen (for the caps) */
} guard_result;

typedef struct guard_chain {
    const guard_policy *p[GUARD_MAX_CHAIN];
    size_t              n;
} guard_chain;

void guard_result_add(guard_result *r, int stage, const char *detector, int action, int is_deny);
/* "in:mask:email,card;out:log:custom.ticket" (fits len, cut on a name). */
void guard_result_summary(const guard_result *r, char *out, size_t len);

/* Runs the chain's policies for stage over s[0..n) (valid UTF-8). Returns 1
 * and the masked text in out when something was masked, 0 when the text is
 * unchanged (out untouched), -1 out of memory. Blocks are only recorded in
 * res (res->action == GUARD_BLOCK): the caller refuses. */
int  guard_text(const guard_chain *c, int stage, const char *s, size_t n, buf_t *out, guard_result *res);

/* Size caps over the whole input text (bytes, characters, estimated tokens =
 * characters / 4): the first policy whose cap is exceeded, else NULL; *what
 * names the cap. */
const guard_policy *guard_caps_exceeded(const guard_chain *c, size_t bytes, size_t chars, const char **what);

/* Incremental masking of one text stream (an answer's deltas). */
typedef struct guard_stream_stage {
    buf_t  buf;                  /* lookbehind context [0, ctx) then text not yet released */
    size_t ctx;
} guard_stream_stage;

typedef struct guard_stream {
    const guard_chain *chain;
    guard_stream_stage st[GUARD_MAX_CHAIN];
    guard_result      *res;
    buf_t              tmp;
} guard_stream;

void guard_stream_init(guard_stream *g, const guard_chain *c, guard_result *res);
void guard_stream_free(guard_stream *g);
/* Appends to out the text that can be released now (masked). -1 out of
 * memory; a block shows in res->action. */
int  guard_stream_feed(guard_stream *g, const char *s, size_t n, buf_t *out);
/* The end of the text: releases everything held. */
int  guard_stream_flush(guard_stream *g, buf_t *out);
/* 1 while text is held back. */
int  guard_stream_pending(const guard_stream *g);

/* Validators, exposed for tests. */
int guard_luhn_ok(const char *s, size_t n);      /* digits with spaces/dashes, 13-19 digits */
int guard_iban_ok(const char *s, size_t n);      /* optional spaces; country length and mod-97 */

#endif
