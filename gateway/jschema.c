#include "jschema.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct ctx {
    const json_value *root;
    long   steps;
    int    depth;
    int    unchecked;          /* a bound was hit */
    char   path[256];
    size_t plen;
    char  *out_path;  size_t out_pathlen;
    char  *why;       size_t whylen;
    int    reported;           /* the first violation is kept */
} ctx;

static int validate(ctx *c, const json_value *s, const json_value *v);

/* A schema object's keywords, found in one pass over its members. */
typedef struct kw {
    const json_value *ref, *type, *cnst, *enm, *any_of, *all_of, *props, *req, *addl, *items;
    const json_value *min_len, *max_len, *min, *max, *xmin, *xmax, *mult, *min_items, *max_items;
} kw;

static void scan(const json_value *s, kw *k)
{
    static const struct { const char *name; size_t off; } names[] = {
        { "$ref", offsetof(kw, ref) }, { "type", offsetof(kw, type) }, { "const", offsetof(kw, cnst) },
        { "enum", offsetof(kw, enm) }, { "anyOf", offsetof(kw, any_of) }, { "allOf", offsetof(kw, all_of) },
        { "properties", offsetof(kw, props) }, { "required", offsetof(kw, req) },
        { "additionalProperties", offsetof(kw, addl) }, { "items", offsetof(kw, items) },
        { "minLength", offsetof(kw, min_len) }, { "maxLength", offsetof(kw, max_len) },
        { "minimum", offsetof(kw, min) }, { "maximum", offsetof(kw, max) },
        { "exclusiveMinimum", offsetof(kw, xmin) }, { "exclusiveMaximum", offsetof(kw, xmax) },
        { "multipleOf", offsetof(kw, mult) }, { "minItems", offsetof(kw, min_items) }, { "maxItems", offsetof(kw, max_items) },
    };
    memset(k, 0, sizeof *k);
    for (const json_value *m = s->first; m; m = m->next)
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (m->key[0] == names[i].name[0] && !strcmp(m->key, names[i].name)) {
                const json_value **slot = (const json_value **)(void *)((char *)k + names[i].off);
                if (!*slot) *slot = m;   /* the first of duplicates, as json_get */
                break;
            }
}

static int unchecked(ctx *c, const char *reason)
{
    if (!c->unchecked) snprintf(c->why, c->whylen, "%s", reason);
    c->unchecked = 1;
    return 0;
}

/* The first violation is kept: its path and what is wrong. */
static int fail(ctx *c, const char *why)
{
    if (c->reported || c->unchecked) return 0;
    c->reported = 1;
    snprintf(c->out_path, c->out_pathlen, "%s", c->path);
    snprintf(c->why, c->whylen, "%s", why);
    return 0;
}

/* ... with the bound it broke: "less than the minimum 3" */
static int fail_bound(ctx *c, const char *what, double bound)
{
    char why[128];
    snprintf(why, sizeof why, "%s %g", what, bound);
    return fail(c, why);
}

/* path segments: ".name" (names cut to 64 bytes, the path to its buffer) or
 * "[i]"; no printf: this runs for every value of an answer */
static size_t push_bytes(ctx *c, char lead, const char *p, size_t n, char tail)
{
    size_t saved = c->plen, need = 1 + n + (tail ? 1 : 0);
    if (c->plen + need < sizeof c->path) {
        c->path[c->plen++] = lead;
        memcpy(c->path + c->plen, p, n);
        c->plen += n;
        if (tail) c->path[c->plen++] = tail;
    }
    c->path[c->plen] = '\0';
    return saved;
}

static size_t push_key(ctx *c, const char *k, size_t n)
{
    return push_bytes(c, '.', k, strnlen(k, n > 64 ? 64 : n), 0);   /* a key may hold \0 (from \u0000) */
}

static size_t push_index(ctx *c, size_t i)
{
    char d[24];
    size_t n = sizeof d;
    do { d[--n] = (char)('0' + i % 10); i /= 10; } while (i);
    return push_bytes(c, '[', d + n, sizeof d - n, ']');
}

static void pop(ctx *c, size_t saved) { c->plen = saved; c->path[saved] = '\0'; }

static const char *type_name(const json_value *v)
{
    switch (v->type) {
    case JSON_NULL: return "null";
    case JSON_FALSE: case JSON_TRUE: return "boolean";
    case JSON_NUMBER: return "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "?";
}

static int has_type(const json_value *v, const char *t)
{
    if (!strcmp(t, "integer")) return v->type == JSON_NUMBER && isfinite(v->num) && v->num == floor(v->num);
    if (!strcmp(t, "number")) return v->type == JSON_NUMBER;
    return !strcmp(t, type_name(v));
}

/* Deep equality for enum and const, charged to the step budget. */
static int equal(ctx *c, const json_value *a, const json_value *b, int depth)
{
    if (++c->steps > JSCHEMA_MAX_STEPS || depth > JSCHEMA_MAX_DEPTH) return unchecked(c, "schema too large to check");
    if (a->type != b->type) return 0;
    switch (a->type) {
    case JSON_NULL: case JSON_TRUE: case JSON_FALSE: return 1;
    case JSON_NUMBER: return a->num == b->num;
    case JSON_STRING: return a->str_len == b->str_len && !memcmp(a->str, b->str, a->str_len);
    case JSON_ARRAY: {
        if (a->count != b->count) return 0;
        for (const json_value *x = a->first, *y = b->first; x && y; x = x->next, y = y->next)
            if (!equal(c, x, y, depth + 1)) return 0;
        return 1;
    }
    case JSON_OBJECT: {
        if (a->count != b->count) return 0;
        for (const json_value *x = a->first; x; x = x->next) {
            const json_value *y = b->first;
            while (y && !(y->key_len == x->key_len && !memcmp(y->key, x->key, x->key_len))) {
                if (++c->steps > JSCHEMA_MAX_STEPS) return unchecked(c, "schema too large to check");
                y = y->next;
            }
            if (!y || !equal(c, x, y, depth + 1)) return 0;
        }
        return 1;
    }
    }
    return 0;
}

/* "#", "#/$defs/name", "#/definitions/a/b" (JSON pointer, ~0 and ~1 decoded). */
static const json_value *resolve(ctx *c, const char *ref)
{
    if (ref[0] != '#') return NULL;
    const json_value *cur = c->root;
    const char *p = ref + 1;
    while (*p == '/' && cur) {
        char seg[128];
        size_t n = 0;
        for (p++; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~' && (p[1] == '0' || p[1] == '1')) ch = *++p == '0' ? '~' : '/';
            if (n + 1 >= sizeof seg) return NULL;
            seg[n++] = ch;
        }
        seg[n] = '\0';
        cur = json_get(cur, seg);
    }
    return *p ? NULL : cur;
}

static double num_of(const json_value *x, int *present)
{
    *present = x && x->type == JSON_NUMBER;
    return *present ? x->num : 0;
}

static size_t utf8_len(const char *s, size_t n)
{
    size_t cps = 0;
    for (size_t i = 0; i < n; i++) cps += ((unsigned char)s[i] & 0xC0) != 0x80;
    return cps;
}

static int check_type(ctx *c, const json_value *t, const json_value *v)
{
    char msg[160];
    if (t->type == JSON_STRING) {
        if (has_type(v, t->str)) return 1;
        snprintf(msg, sizeof msg, "expected %.20s, got %s", t->str, type_name(v));
        return fail(c, msg);
    }
    if (t->type != JSON_ARRAY) return 1;
    char names[96] = "";
    size_t nl = 0;
    for (const json_value *e = t->first; e; e = e->next) {
        if (e->type != JSON_STRING) continue;
        if (has_type(v, e->str)) return 1;
        int w = snprintf(names + nl, sizeof names - nl, "%s%s", nl ? " or " : "", e->str);
        if (w > 0 && nl + (size_t)w < sizeof names) nl += (size_t)w;
    }
    snprintf(msg, sizeof msg, "expected %s, got %s", names, type_name(v));
    return fail(c, msg);
}

static int check_number(ctx *c, const kw *k, const json_value *v)
{
    int has;
    double x = v->num, b;
    b = num_of(k->min, &has);
    if (has && !(x >= b)) return fail_bound(c, "less than the minimum", b);
    b = num_of(k->max, &has);
    if (has && !(x <= b)) return fail_bound(c, "more than the maximum", b);
    b = num_of(k->xmin, &has);
    if (has && !(x > b)) return fail_bound(c, "not more than the exclusive minimum", b);
    b = num_of(k->xmax, &has);
    if (has && !(x < b)) return fail_bound(c, "not less than the exclusive maximum", b);
    b = num_of(k->mult, &has);
    if (has && b > 0) {
        double q = x / b;
        if (!isfinite(q) || fabs(q - nearbyint(q)) > 1e-9 * fmax(1, fabs(q))) return fail_bound(c, "not a multiple of", b);
    }
    return 1;
}

static int check_object(ctx *c, const kw *k, const json_value *v)
{
    const json_value *props = k->props, *req = k->req, *addl = k->addl;
    if (req && req->type == JSON_ARRAY)
        for (const json_value *q = req->first; q; q = q->next) {
            if (++c->steps > JSCHEMA_MAX_STEPS) return unchecked(c, "schema too large to check");
            if (q->type == JSON_STRING && !json_get(v, q->str)) {
                char why[128];
                snprintf(why, sizeof why, "required property \"%.64s\" is missing", q->str);
                return fail(c, why);
            }
        }
    for (const json_value *m = v->first; m; m = m->next) {
        const json_value *ps = props && props->type == JSON_OBJECT ? json_get(props, m->key) : NULL;
        size_t saved = push_key(c, m->key, m->key_len);
        int ok = 1;
        if (ps) ok = validate(c, ps, m);
        else if (addl && addl->type == JSON_FALSE) ok = fail(c, "unexpected property (additionalProperties is false)");
        else if (addl && addl->type == JSON_OBJECT) ok = validate(c, addl, m);
        pop(c, saved);
        if (!ok) return 0;
    }
    return 1;
}

static int check_array(ctx *c, const kw *k, const json_value *v)
{
    int has;
    double b = num_of(k->min_items, &has);
    if (has && (double)v->count < b) return fail_bound(c, "fewer items than minItems", b);
    b = num_of(k->max_items, &has);
    if (has && (double)v->count > b) return fail_bound(c, "more items than maxItems", b);
    const json_value *items = k->items;
    if (!items || items->type != JSON_OBJECT) return 1;
    size_t i = 0;
    for (const json_value *e = v->first; e; e = e->next, i++) {
        size_t saved = push_index(c, i);
        int ok = validate(c, items, e);
        pop(c, saved);
        if (!ok) return 0;
    }
    return 1;
}

static int validate(ctx *c, const json_value *s, const json_value *v)
{
    if (c->unchecked) return 0;
    if (++c->steps > JSCHEMA_MAX_STEPS) return unchecked(c, "schema too large to check");
    if (c->depth >= JSCHEMA_MAX_DEPTH) return unchecked(c, "schema nested too deeply (or a $ref cycle)");
    if (s->type == JSON_TRUE) return 1;
    if (s->type == JSON_FALSE) return fail(c, "no value is allowed here");
    if (s->type != JSON_OBJECT) return 1;
    c->depth++;
    int ok = 1;
    kw kws;
    scan(s, &kws);
    c->steps += (long)s->count;
    const json_value *k;
    if ((k = kws.ref) && k->type == JSON_STRING) {
        const json_value *target = resolve(c, k->str);
        if (!target) { c->depth--; return unchecked(c, "a $ref of the schema does not resolve"); }
        ok = validate(c, target, v);
    }
    if (ok && (k = kws.type)) ok = check_type(c, k, v);
    if (ok && (k = kws.cnst) && !equal(c, k, v, 0)) ok = fail(c, "not the constant value");
    if (ok && (k = kws.enm) && k->type == JSON_ARRAY) {
        int found = 0;
        for (const json_value *e = k->first; e && !found && !c->unchecked; e = e->next) found = equal(c, e, v, 0);
        if (!found) ok = fail(c, "not one of the enum values");
    }
    if (ok && (k = kws.any_of) && k->type == JSON_ARRAY) {
        int any = 0;
        int was = c->reported;
        for (const json_value *e = k->first; e && !any && !c->unchecked; e = e->next) {
            any = validate(c, e, v);
            if (!was) c->reported = 0;   /* a failing branch is not the answer's violation */
        }
        if (!any) ok = fail(c, "matches none of anyOf");
    }
    if (ok && (k = kws.all_of) && k->type == JSON_ARRAY)
        for (const json_value *e = k->first; e && ok; e = e->next) ok = validate(c, e, v);
    if (ok && v->type == JSON_STRING) {
        int has;
        size_t n = utf8_len(v->str, v->str_len);
        double b = num_of(kws.min_len, &has);
        if (has && (double)n < b) ok = fail_bound(c, "shorter than minLength", b);
        b = num_of(kws.max_len, &has);
        if (ok && has && (double)n > b) ok = fail_bound(c, "longer than maxLength", b);
    }
    if (ok && v->type == JSON_NUMBER) ok = check_number(c, &kws, v);
    if (ok && v->type == JSON_OBJECT) ok = check_object(c, &kws, v);
    if (ok && v->type == JSON_ARRAY) ok = check_array(c, &kws, v);
    c->depth--;
    return ok && !c->unchecked;
}

int jschema_validate(const json_value *schema, const json_value *inst, char *path, size_t pathlen,
                     char *why, size_t whylen)
{
    ctx c;
    memset(&c, 0, sizeof c);
    c.root = schema;
    c.out_path = path; c.out_pathlen = pathlen;
    c.why = why; c.whylen = whylen;
    c.path[0] = '$'; c.plen = 1;
    path[0] = why[0] = '\0';
    int ok = validate(&c, schema, inst);
    if (c.unchecked) return JSCHEMA_UNCHECKED;
    if (ok) return JSCHEMA_VALID;
    if (!c.reported) { snprintf(path, pathlen, "$"); snprintf(why, whylen, "does not match the schema"); }
    return JSCHEMA_INVALID;
}
