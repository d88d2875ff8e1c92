/* cpstate: a data plane's copy of the control plane's configuration, and the
 * conversions between its protobuf form and a gw_config.
 *
 * Keys live in a keytab that deltas change in place; models are few, so a
 * change to any of them rebuilds the models part of a new gw_config. Every
 * message is checked in full before anything is applied: a bad snapshot or
 * delta changes nothing.
 */
#ifndef GW_CPSTATE_H
#define GW_CPSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "gateway.pb-c.h"

typedef struct cpstate {
    int              loaded;      /* a snapshot was loaded (versions start at 0) */
    uint64_t         version;
    keytab          *keys;
    Gw__ModelAlias **models;      /* each unpacked on its own (owned) */
    size_t           nmodels;
} cpstate;

#define CPSTATE_MODELS_MAX 10000

void cpstate_init(cpstate *s);
void cpstate_free(cpstate *s);

/* Replaces *s with the serialized Snapshot in data. On error *s is unchanged. */
int  cpstate_load_snapshot(cpstate *s, const uint8_t *data, size_t len, char *err, size_t errlen);
/* Checks a serialized Snapshot without building anything (the agent). */
int  cpstate_check_snapshot(const uint8_t *data, size_t len, uint64_t *version, char *err, size_t errlen);

/* Checks every item of a delta. */
int  cpstate_check_delta(const Gw__Delta *d, char *err, size_t errlen);
/* Applies a checked delta whose base_version is s->version. *models_changed
 * tells the caller to rebuild its gw_config. -1 only when out of memory;
 * then *s may be half-applied and the caller must reload in full. */
int  cpstate_apply_delta(cpstate *s, const Gw__Delta *d, int *models_changed, char *err, size_t errlen);

/* snapshot.pb + journal from state_dir. 1 loaded, 0 nothing there, -1 error. */
int  cpstate_load_disk(cpstate *s, const char *state_dir, char *err, size_t errlen);

/* A gw_config: base's settings, s's models (unusable deployments are logged
 * and skipped), s's key table (shared). version = s->version. */
gw_config *cpstate_build_config(const cpstate *s, const gw_config *base, char *err, size_t errlen);

#endif
