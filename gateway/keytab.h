/* keytab: the virtual-key table, packed for millions of keys.
 *
 * One array of fixed-size records (96 bytes), names in one arena, model
 * scopes interned (a thousand keys with the same scope share one list),
 * teams interned, and two open-addressing indexes of 32-bit slots: by the
 * key's SHA-256 (what a request presents) and by its id (what a delta names).
 * About 130 bytes per key in all. Upsert and remove are O(1), so a worker
 * applies a delta in O(changes), in place, with no copy of the table.
 *
 * Single-threaded: a worker owns its table. Lookups return a view whose
 * pointers stay valid only until the table is next changed; whoever needs a
 * key beyond that (a request's access log) copies what it needs.
 */
#ifndef GW_KEYTAB_H
#define GW_KEYTAB_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct keytab keytab;

enum { KT_PERIOD_NONE, KT_PERIOD_DAILY, KT_PERIOD_WEEKLY, KT_PERIOD_MONTHLY, KT_PERIOD_TOTAL };

#define KT_NAME_MAX   255
#define KT_MODELS_MAX 1024     /* aliases in one key's scope */

/* A key as given to keytab_upsert (all pointers are copied from). */
typedef struct keytab_key {
    uint8_t            id[16];
    uint8_t            sha256[32];
    int                has_id;          /* 0: a YAML key (no control-plane id) */
    const char        *name;            /* at most KT_NAME_MAX bytes, NUL-terminated */
    const uint8_t     *team_id;         /* 16 bytes, or NULL */
    int                all_models;
    const char *const *models;
    size_t             nmodels;
    int64_t            rpm_limit, tpm_limit;   /* < 0: none */
    double             budget_usd;             /* < 0: none */
    int                budget_period;          /* KT_PERIOD_* */
    int64_t            expires_at;             /* unix seconds, 0: never */
    int                blocked;
    int                budget_exceeded;        /* the control plane saw the budget reached */
    double             budget_spent_usd;       /* its figure for the current period */
} keytab_key;

/* A team as given to keytab_team_upsert. */
typedef struct keytab_team {
    uint8_t     id[16];
    const char *name;
    int64_t     rpm_limit, tpm_limit;
    double      budget_usd;
    int         budget_period;
    int         blocked;
    int         budget_exceeded;
    double      budget_spent_usd;
} keytab_team;

/* A key's or team's budget as a lookup sees it. */
typedef struct gw_budget {
    double   limit_usd;       /* < 0: no budget */
    double   spent_usd;       /* the control plane's spend of the current period, when last sent */
    uint64_t ident;           /* stable per key or team: names the worker's own spend counter */
    int      period;          /* KT_PERIOD_* */
    int      exceeded;        /* the control plane saw spent reach the limit */
} gw_budget;

/* What a lookup sees; valid until the table changes. */
typedef struct gw_key {
    const char        *name;
    char               id[37];          /* "" for YAML keys */
    char               team_id[37];     /* "" when the key has no team */
    char *const       *models;          /* NULL: every alias */
    size_t             nmodels;
    int64_t            rpm_limit, tpm_limit;   /* < 0: none */
    int64_t            team_rpm_limit, team_tpm_limit;   /* the key's team's; < 0: none */
    gw_budget          budget, team_budget;    /* team_budget.limit_usd < 0 without a team budget */
    int64_t            expires_at;
} gw_key;

keytab *keytab_new(size_t expected_keys);
keytab *keytab_ref(keytab *t);
void    keytab_unref(keytab *t);

/* Inserts or replaces (same id) a key; a new hash replaces the old one in
 * the index (rotation). YAML keys (no id) are only inserted. -1: out of
 * memory, or the hash already belongs to another key (*clash gets its name). */
int  keytab_upsert(keytab *t, const keytab_key *k, const char **clash);
/* 1 removed, 0 unknown id. */
int  keytab_remove(keytab *t, const uint8_t id[16]);

int  keytab_team_upsert(keytab *t, const keytab_team *team);
int  keytab_team_remove(keytab *t, const uint8_t id[16]);

/* A usable key for this hash at time now: found, not expired, not blocked
 * (nor its team). Fills *out and returns 1; else 0. Constant-time compare. */
int  keytab_find(const keytab *t, const uint8_t sha256[32], time_t now, gw_key *out);

size_t keytab_count(const keytab *t);
/* Heap bytes the table holds (records, indexes, arena, scopes, teams). */
size_t keytab_bytes(const keytab *t);

int  keytab_period_parse(const char *s);   /* KT_PERIOD_*, or -1 */

#endif
