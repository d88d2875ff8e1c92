#include "keytab.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#include "cplink.h"

#define F_LIVE    1
#define F_BLOCKED 2
#define F_HAS_ID  4
#define F_BUDGET_EXCEEDED 8

#define NO_ENTRY  UINT32_MAX

typedef struct kt_rec {
    uint8_t  sha256[32];
    uint8_t  id[16];
    int64_t  rpm_limit, tpm_limit;
    double   budget_usd;
    double   budget_spent;
    int64_t  expires_at;
    uint32_t name_off;      /* into the arena; for a free record: next free record */
    uint32_t scope;         /* 0: every alias; else scopes[scope - 1] */
    uint32_t team;          /* 0: none; else teams[team - 1] */
    uint16_t name_len;
    uint8_t  period;
    uint8_t  flags;
} kt_rec;
_Static_assert(sizeof(kt_rec) == 104, "a key record is 104 bytes");

typedef struct kt_scope {
    char   **models;        /* NULL when the slot is free */
    uint32_t n;
    uint32_t refs;          /* for a free slot: next free slot */
    uint64_t hash;
} kt_scope;

typedef struct kt_team {
    uint8_t  id[16];
    char    *name;
    int64_t  rpm_limit, tpm_limit;
    double   budget_usd, budget_spent;
    uint8_t  period, blocked, present, budget_exceeded;
} kt_team;

/* Open addressing, linear probing, entry index + 1 per slot (0 = empty),
 * backward-shift deletion (no tombstones), at most half full. */
typedef struct kt_index {
    uint32_t *slot;
    size_t    cap, n;
} kt_index;

struct keytab {
    int       refcount;
    kt_rec   *recs;
    size_t    nrecs, recs_cap, live;
    uint32_t  free_rec;     /* NO_ENTRY: none */
    char     *names;
    size_t    names_len, names_cap, names_garbage;
    kt_index  by_sha, by_id;
    kt_scope *scopes;
    size_t    nscopes, scopes_cap;
    uint32_t  free_scope;
    kt_index  scope_ix;
    kt_team  *teams;
    size_t    nteams, teams_cap;
    kt_index  team_ix;
};

static const char *const g_periods[] = { NULL, "daily", "weekly", "monthly", "total" };

int keytab_period_parse(const char *s)
{
    if (!s || !*s) return KT_PERIOD_NONE;
    for (int i = 1; i <= KT_PERIOD_TOTAL; i++)
        if (!strcmp(s, g_periods[i])) return i;
    return -1;
}

/* ---- hashing ---- */

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_sha(const uint8_t *sha)
{
    uint64_t h;
    memcpy(&h, sha, sizeof h);   /* already uniform */
    return h;
}

static uint64_t hash_id(const uint8_t *id)
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    return mix(a ^ (b * 0x9e3779b97f4a7c15ULL));
}

static uint64_t hash_models(const char *const *m, size_t n)
{
    uint64_t h = 1469598103934665603ULL ^ n;
    for (size_t i = 0; i < n; i++) {
        for (const char *p = m[i]; *p; p++) { h ^= (unsigned char)*p; h *= 1099511628211ULL; }
        h ^= 0xff; h *= 1099511628211ULL;
    }
    return mix(h);
}

/* ---- the generic index ---- */

typedef uint64_t (*entry_hash_fn)(const keytab *t, uint32_t e);

static uint64_t rec_sha_hash(const keytab *t, uint32_t e) { return hash_sha(t->recs[e].sha256); }
static uint64_t rec_id_hash(const keytab *t, uint32_t e) { return hash_id(t->recs[e].id); }
static uint64_t scope_hash(const keytab *t, uint32_t e) { return t->scopes[e].hash; }
static uint64_t team_hash(const keytab *t, uint32_t e) { return hash_id(t->teams[e].id); }

static void ix_put(kt_index *ix, uint64_t h, uint32_t e)
{
    size_t mask = ix->cap - 1;
    size_t i = h & mask;
    while (ix->slot[i]) i = (i + 1) & mask;
    ix->slot[i] = e + 1;
    ix->n++;
}

/* Room for one more entry; 0 ok, -1 out of memory. */
static int ix_reserve(keytab *t, kt_index *ix, size_t want, entry_hash_fn hf)
{
    if (ix->cap && want * 2 <= ix->cap) return 0;
    size_t cap = ix->cap ? ix->cap : 16;
    while (cap < want * 2) cap *= 2;
    uint32_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    kt_index old = *ix;
    ix->slot = slot;
    ix->cap = cap;
    ix->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slot[i]) ix_put(ix, hf(t, old.slot[i] - 1), old.slot[i] - 1);
    free(old.slot);
    return 0;
}

static void ix_delete_at(keytab *t, kt_index *ix, size_t i, entry_hash_fn hf)
{
    size_t mask = ix->cap - 1, j = i;
    ix->slot[i] = 0;
    ix->n--;
    for (;;) {
        j = (j + 1) & mask;
        if (!ix->slot[j]) return;
        size_t home = hf(t, ix->slot[j] - 1) & mask;
        /* the entry at j may move back to i unless its home lies in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            ix->slot[i] = ix->slot[j];
            ix->slot[j] = 0;
            i = j;
        }
    }
}

/* Slot position holding entry e, found by its hash. */
static size_t ix_pos_of(const kt_index *ix, uint64_t h, uint32_t e)
{
    size_t mask = ix->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask)
        if (ix->slot[i] == e + 1 || !ix->slot[i]) return i;
}

static uint32_t find_by_sha(const keytab *t, const uint8_t *sha)
{
    if (!t->by_sha.cap) return NO_ENTRY;
    size_t mask = t->by_sha.cap - 1;
    for (size_t i = hash_sha(sha) & mask;; i = (i + 1) & mask) {
        uint32_t s = t->by_sha.slot[i];
        if (!s) return NO_ENTRY;
        if (CRYPTO_memcmp(t->recs[s - 1].sha256, sha, 32) == 0) return s - 1;
    }
}

static uint32_t find_by_id(const keytab *t, const uint8_t *id)
{
    if (!t->by_id.cap) return NO_ENTRY;
    size_t mask = t->by_id.cap - 1;
    for (size_t i = hash_id(id) & mask;; i = (i + 1) & mask) {
        uint32_t s = t->by_id.slot[i];
        if (!s) return NO_ENTRY;
        if (!memcmp(t->recs[s - 1].id, id, 16)) return s - 1;
    }
}

/* ---- lifecycle ---- */

keytab *keytab_new(size_t expected)
{
    keytab *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->refcount = 1;
    t->free_rec = t->free_scope = NO_ENTRY;
    if (expected > (size_t)UINT32_MAX / 4) expected = UINT32_MAX / 4;
    if (expected) {
        t->recs = malloc(expected * sizeof *t->recs);
        if (!t->recs || ix_reserve(t, &t->by_sha, expected, rec_sha_hash) < 0 ||
            ix_reserve(t, &t->by_id, expected, rec_id_hash) < 0) {
            keytab_unref(t);
            return NULL;
        }
        t->recs_cap = expected;
    }
    return t;
}

keytab *keytab_ref(keytab *t)
{
    if (t) t->refcount++;
    return t;
}

static void scope_free_models(kt_scope *s)
{
    if (!s->models) return;
    for (uint32_t i = 0; i < s->n; i++) free(s->models[i]);
    free(s->models);
    s->models = NULL;
    s->n = 0;
}

void keytab_unref(keytab *t)
{
    if (!t || --t->refcount > 0) return;
    for (size_t i = 0; i < t->nscopes; i++) scope_free_models(&t->scopes[i]);
    for (size_t i = 0; i < t->nteams; i++) free(t->teams[i].name);
    free(t->recs); free(t->names); free(t->scopes); free(t->teams);
    free(t->by_sha.slot); free(t->by_id.slot); free(t->scope_ix.slot); free(t->team_ix.slot);
    free(t);
}

size_t keytab_count(const keytab *t) { return t ? t->live : 0; }

size_t keytab_bytes(const keytab *t)
{
    if (!t) return 0;
    size_t n = sizeof *t + t->recs_cap * sizeof(kt_rec) + t->names_cap +
               (t->by_sha.cap + t->by_id.cap + t->scope_ix.cap + t->team_ix.cap) * sizeof(uint32_t) +
               t->scopes_cap * sizeof(kt_scope) + t->teams_cap * sizeof(kt_team);
    for (size_t i = 0; i < t->nscopes; i++) {
        if (!t->scopes[i].models) continue;
        n += t->scopes[i].n * sizeof(char *);
        for (uint32_t j = 0; j < t->scopes[i].n; j++) n += strlen(t->scopes[i].models[j]) + 1;
    }
    return n;
}

/* ---- growable parts ---- */

static int grow(void **p, size_t *cap, size_t want, size_t size)
{
    if (want <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < want) c *= 2;
    if (c > SIZE_MAX / size) return -1;
    void *q = realloc(*p, c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Rewrites the arena without the names of replaced or removed keys. */
static int compact_names(keytab *t)
{
    size_t cap = t->names_len - t->names_garbage + 64;
    char *n = malloc(cap), *w = n;
    if (!n) return -1;
    for (size_t i = 0; i < t->nrecs; i++) {
        kt_rec *r = &t->recs[i];
        if (!(r->flags & F_LIVE)) continue;
        memcpy(w, t->names + r->name_off, (size_t)r->name_len + 1);
        r->name_off = (uint32_t)(w - n);
        w += r->name_len + 1;
    }
    free(t->names);
    t->names = n;
    t->names_cap = cap;
    t->names_len = (size_t)(w - n);
    t->names_garbage = 0;
    return 0;
}

static int reserve_name(keytab *t, size_t len)
{
    if (t->names_garbage > (1u << 20) && t->names_garbage > t->names_len / 2 && compact_names(t) < 0) return -1;
    if (t->names_len + len + 1 > UINT32_MAX) return -1;
    if (t->names_len + len + 1 <= t->names_cap) return 0;
    size_t c = t->names_cap ? t->names_cap : 4096;
    while (c < t->names_len + len + 1) c *= 2;
    char *q = realloc(t->names, c);
    if (!q) return -1;
    t->names = q;
    t->names_cap = c;
    return 0;
}

static uint32_t put_name(keytab *t, const char *s, size_t len)
{
    uint32_t off = (uint32_t)t->names_len;
    memcpy(t->names + off, s, len);
    t->names[off + len] = '\0';
    t->names_len += len + 1;
    return off;
}

/* ---- scopes ---- */

static void scope_release(keytab *t, uint32_t scope)
{
    if (!scope) return;
    kt_scope *s = &t->scopes[scope - 1];
    if (--s->refs > 0) return;
    ix_delete_at(t, &t->scope_ix, ix_pos_of(&t->scope_ix, s->hash, scope - 1), scope_hash);
    scope_free_models(s);
    s->refs = t->free_scope;
    t->free_scope = scope - 1;
}

/* A reference to the interned list (0 for every alias); NO_ENTRY on OOM. */
static uint32_t scope_intern(keytab *t, const keytab_key *k)
{
    if (k->all_models) return 0;
    uint64_t h = hash_models(k->models, k->nmodels);
    if (t->scope_ix.cap) {
        size_t mask = t->scope_ix.cap - 1;
        for (size_t i = h & mask; t->scope_ix.slot[i]; i = (i + 1) & mask) {
            kt_scope *s = &t->scopes[t->scope_ix.slot[i] - 1];
            if (s->hash != h || s->n != k->nmodels) continue;
            size_t j = 0;
            while (j < s->n && !strcmp(s->models[j], k->models[j])) j++;
            if (j == s->n) { s->refs++; return t->scope_ix.slot[i]; }
        }
    }
    if (ix_reserve(t, &t->scope_ix, t->scope_ix.n + 1, scope_hash) < 0) return NO_ENTRY;
    uint32_t e = t->free_scope;
    if (e == NO_ENTRY) {
        if (t->nscopes >= UINT32_MAX - 1 ||
            grow((void **)&t->scopes, &t->scopes_cap, t->nscopes + 1, sizeof *t->scopes) < 0)
            return NO_ENTRY;
        e = (uint32_t)t->nscopes;
    }
    char **m = calloc(k->nmodels ? k->nmodels : 1, sizeof *m);
    if (!m) return NO_ENTRY;
    for (size_t i = 0; i < k->nmodels; i++)
        if (!(m[i] = strdup(k->models[i]))) {
            while (i > 0) free(m[--i]);
            free(m);
            return NO_ENTRY;
        }
    if (e == t->free_scope) t->free_scope = t->scopes[e].refs;
    else t->nscopes++;
    t->scopes[e] = (kt_scope){ .models = m, .n = (uint32_t)k->nmodels, .refs = 1, .hash = h };
    ix_put(&t->scope_ix, h, e);
    return e + 1;
}

/* ---- teams ---- */

static uint32_t find_team(const keytab *t, const uint8_t *id)
{
    if (!t->team_ix.cap) return NO_ENTRY;
    size_t mask = t->team_ix.cap - 1;
    for (size_t i = hash_id(id) & mask; t->team_ix.slot[i]; i = (i + 1) & mask)
        if (!memcmp(t->teams[t->team_ix.slot[i] - 1].id, id, 16)) return t->team_ix.slot[i] - 1;
    return NO_ENTRY;
}

/* Teams are interned for good: a key may name a team before (or after) the
 * team itself is known. NO_ENTRY on OOM. */
static uint32_t team_intern(keytab *t, const uint8_t *id)
{
    uint32_t e = find_team(t, id);
    if (e != NO_ENTRY) return e;
    if (t->nteams >= UINT32_MAX - 1 || ix_reserve(t, &t->team_ix, t->team_ix.n + 1, team_hash) < 0 ||
        grow((void **)&t->teams, &t->teams_cap, t->nteams + 1, sizeof *t->teams) < 0)
        return NO_ENTRY;
    e = (uint32_t)t->nteams++;
    memset(&t->teams[e], 0, sizeof t->teams[e]);
    memcpy(t->teams[e].id, id, 16);
    ix_put(&t->team_ix, hash_id(id), e);
    return e;
}

int keytab_team_upsert(keytab *t, const keytab_team *tm)
{
    uint32_t e = team_intern(t, tm->id);
    if (e == NO_ENTRY) return -1;
    char *name = strdup(tm->name ? tm->name : "");
    if (!name) return -1;
    kt_team *x = &t->teams[e];
    free(x->name);
    x->name = name;
    x->rpm_limit = tm->rpm_limit;
    x->tpm_limit = tm->tpm_limit;
    x->budget_usd = tm->budget_usd;
    x->period = (uint8_t)tm->budget_period;
    x->blocked = tm->blocked ? 1 : 0;
    x->budget_exceeded = tm->budget_exceeded ? 1 : 0;
    x->budget_spent = tm->budget_spent_usd;
    x->present = 1;
    return 0;
}

int keytab_team_remove(keytab *t, const uint8_t id[16])
{
    uint32_t e = find_team(t, id);
    if (e == NO_ENTRY || !t->teams[e].present) return 0;
    t->teams[e].present = 0;
    t->teams[e].blocked = 0;
    return 1;
}

/* ---- keys ---- */

static void fill(kt_rec *r, const keytab_key *k)
{
    r->rpm_limit = k->rpm_limit;
    r->tpm_limit = k->tpm_limit;
    r->budget_usd = k->budget_usd;
    r->budget_spent = k->budget_spent_usd;
    r->expires_at = k->expires_at;
    r->period = (uint8_t)k->budget_period;
    r->flags = (uint8_t)(F_LIVE | (k->blocked ? F_BLOCKED : 0) | (k->has_id ? F_HAS_ID : 0) |
                         (k->budget_exceeded ? F_BUDGET_EXCEEDED : 0));
}

int keytab_upsert(keytab *t, const keytab_key *k, const char **clash)
{
    size_t nlen = strlen(k->name);
    if (nlen > KT_NAME_MAX) return -1;
    uint32_t cur = k->has_id ? find_by_id(t, k->id) : find_by_sha(t, k->sha256);
    uint32_t other = find_by_sha(t, k->sha256);
    /* a YAML table is built once: the same hash twice is a config error */
    if (other != NO_ENTRY && (other != cur || !k->has_id)) {
        if (clash) *clash = t->names + t->recs[other].name_off;
        return -1;
    }
    if (clash) *clash = NULL;
    /* everything that can fail happens before the table changes */
    if (ix_reserve(t, &t->by_sha, t->live + 1, rec_sha_hash) < 0 ||
        ix_reserve(t, &t->by_id, t->live + 1, rec_id_hash) < 0 ||
        reserve_name(t, nlen) < 0)
        return -1;
    if (cur == NO_ENTRY && t->free_rec == NO_ENTRY &&
        (t->nrecs >= UINT32_MAX - 1 || grow((void **)&t->recs, &t->recs_cap, t->nrecs + 1, sizeof *t->recs) < 0))
        return -1;
    uint32_t team = 0;
    if (k->team_id) {
        uint32_t te = team_intern(t, k->team_id);
        if (te == NO_ENTRY) return -1;
        team = te + 1;
    }
    uint32_t scope = scope_intern(t, k);
    if (scope == NO_ENTRY) return -1;

    if (cur != NO_ENTRY) {
        kt_rec *r = &t->recs[cur];
        if (memcmp(r->sha256, k->sha256, 32)) {     /* rotated */
            ix_delete_at(t, &t->by_sha, ix_pos_of(&t->by_sha, hash_sha(r->sha256), cur), rec_sha_hash);
            memcpy(r->sha256, k->sha256, 32);
            ix_put(&t->by_sha, hash_sha(r->sha256), cur);
        }
        if (r->name_len != nlen || memcmp(t->names + r->name_off, k->name, nlen)) {
            t->names_garbage += r->name_len + 1u;
            r->name_off = put_name(t, k->name, nlen);
            r->name_len = (uint16_t)nlen;
        }
        scope_release(t, r->scope);
        r->scope = scope;
        r->team = team;
        fill(r, k);
        return 0;
    }
    uint32_t e;
    if (t->free_rec != NO_ENTRY) {
        e = t->free_rec;
        t->free_rec = t->recs[e].name_off;
    } else {
        e = (uint32_t)t->nrecs++;
    }
    kt_rec *r = &t->recs[e];
    memcpy(r->sha256, k->sha256, 32);
    if (k->has_id) memcpy(r->id, k->id, 16);
    else memcpy(r->id, k->sha256, 16);   /* YAML keys: indexed by hash only */
    r->name_off = put_name(t, k->name, nlen);
    r->name_len = (uint16_t)nlen;
    r->scope = scope;
    r->team = team;
    fill(r, k);
    ix_put(&t->by_sha, hash_sha(r->sha256), e);
    if (k->has_id) ix_put(&t->by_id, hash_id(r->id), e);
    t->live++;
    return 0;
}

int keytab_remove(keytab *t, const uint8_t id[16])
{
    uint32_t e = find_by_id(t, id);
    if (e == NO_ENTRY) return 0;
    kt_rec *r = &t->recs[e];
    ix_delete_at(t, &t->by_sha, ix_pos_of(&t->by_sha, hash_sha(r->sha256), e), rec_sha_hash);
    ix_delete_at(t, &t->by_id, ix_pos_of(&t->by_id, hash_id(r->id), e), rec_id_hash);
    scope_release(t, r->scope);
    t->names_garbage += r->name_len + 1u;
    OPENSSL_cleanse(r->sha256, sizeof r->sha256);
    r->flags = 0;
    r->name_off = t->free_rec;
    t->free_rec = e;
    t->live--;
    return 1;
}

int keytab_find(const keytab *t, const uint8_t sha[32], time_t now, gw_key *out)
{
    if (!t) return 0;
    uint32_t e = find_by_sha(t, sha);
    if (e == NO_ENTRY) return 0;
    const kt_rec *r = &t->recs[e];
    const kt_team *team = r->team ? &t->teams[r->team - 1] : NULL;
    if ((r->flags & F_BLOCKED) || (team && team->blocked)) return 0;
    if (r->expires_at > 0 && (int64_t)now >= r->expires_at) return 0;
    out->name = t->names + r->name_off;
    if (r->flags & F_HAS_ID) cplink_uuid_format(r->id, out->id);
    else out->id[0] = '\0';
    if (team) cplink_uuid_format(team->id, out->team_id);
    else out->team_id[0] = '\0';
    if (r->scope) {
        out->models = t->scopes[r->scope - 1].models;
        out->nmodels = t->scopes[r->scope - 1].n;
    } else {
        out->models = NULL;
        out->nmodels = 0;
    }
    out->rpm_limit = r->rpm_limit;
    out->tpm_limit = r->tpm_limit;
    /* a team named by a key but not (yet) sent has no limits, not limit 0 */
    int team_known = team && team->present;
    out->team_rpm_limit = team_known ? team->rpm_limit : -1;
    out->team_tpm_limit = team_known ? team->tpm_limit : -1;
    out->budget = (gw_budget){
        .limit_usd = r->budget_usd, .spent_usd = r->budget_spent, .period = r->period,
        .exceeded = (r->flags & F_BUDGET_EXCEEDED) != 0, .ident = hash_id(r->id) | 1,   /* odd: keys, even: teams */
    };
    if (team_known && team->budget_usd >= 0)
        out->team_budget = (gw_budget){
            .limit_usd = team->budget_usd, .spent_usd = team->budget_spent, .period = team->period,
            .exceeded = team->budget_exceeded, .ident = hash_id(team->id) & ~1ull,
        };
    else
        out->team_budget = (gw_budget){ .limit_usd = -1 };
    out->expires_at = r->expires_at;
    return 1;
}
