/* config: the gateway's configuration as one immutable, refcounted snapshot.
 *
 * A worker serves every request from the snapshot it started with; a reload
 * (SIGHUP, later a push from the control plane) builds a new snapshot off to
 * the side and swaps one pointer. Virtual keys are hashed on load: the plain
 * key never outlives parsing.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "upstream.h"

struct provider;

typedef struct gw_deployment {
    const struct provider *provider;
    char  *provider_name;
    char  *model;              /* upstream model name */
    char  *base_url;           /* without trailing slash */
    char  *api_key;            /* resolved secret; never logged */
    char  *auth_header;        /* precomputed "Authorization: Bearer ..." (or NULL) */
    int    weight;
    long   latency_ms;         /* mock only: simulated latency */
    upstream_timeouts timeouts;
} gw_deployment;

typedef struct gw_model {
    char          *alias;
    char          *strategy;
    gw_deployment *deployments;
    size_t         ndeployments;
    int            total_weight;
} gw_model;

typedef struct gw_key {
    char     *name;
    uint8_t   sha256[32];
    char    **models;          /* NULL = every alias */
    size_t    nmodels;
    long      rpm_limit, tpm_limit;
    double    budget_usd;
    char     *budget_period;
} gw_key;

typedef struct gw_config {
    int        refcount;
    uint64_t   version;        /* bumped by every load in this process */
    char      *path;
    char      *listen_host;
    int        listen_port;
    int        workers;        /* 0 = one per core */
    char      *metrics_listen;
    char      *redis_url;
    char      *state_dir;
    char      *control_plane;
    char      *access_log;     /* "stdout" (default), "off", or a file path */
    size_t     max_body_bytes;
    size_t     max_header_bytes;
    long       client_timeout_ms;
    upstream_timeouts timeouts;

    gw_model  *models;
    size_t     nmodels;
    gw_key    *keys;
    size_t     nkeys;

    /* open-addressing indexes built on load */
    gw_key   **key_index;      size_t key_index_cap;
    gw_model **model_index;    size_t model_index_cap;
} gw_config;

/* Loads and validates a file. On error returns NULL and writes a message that
 * names the exact field ("models[0].deployments[1].provider: unknown provider
 * \"foo\"") into err. */
gw_config *config_load(const char *path, char *err, size_t errlen);
/* Same, from a YAML string (tests). */
gw_config *config_parse(const char *yaml, size_t len, const char *path, char *err, size_t errlen);

gw_config *config_ref(gw_config *c);
void       config_unref(gw_config *c);

/* Lookups: O(1). key_sha256 is the SHA-256 of the presented key. */
const gw_key   *config_find_key(const gw_config *c, const uint8_t key_sha256[32]);
const gw_model *config_find_model(const gw_config *c, const char *alias, size_t len);
int             config_key_allows(const gw_key *k, const char *alias, size_t len);

#endif
