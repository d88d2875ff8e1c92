/* fuzz target: a Snapshot from the control plane (or from state_dir) as the
 * gateway reads it: cpstate_check_snapshot (the agent), cpstate_load_snapshot
 * (a worker, streaming field by field through common/pbwire.c) and
 * cpstate_build_config. What loads must have passed the check. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cpstate.h"
#include "keytab.h"
#include "log.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static gw_config *base;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    char err[256];
    const char *y = "listen: 127.0.0.1:1\ncontrol_plane: tcp://127.0.0.1:2\nstate_dir: /tmp\n";
    base = config_parse(y, strlen(y), "fuzz.yaml", err, sizeof err);
    if (!base) { fprintf(stderr, "%s\n", err); abort(); }
    setenv("FUZZ_SECRET", "sk-fuzz-secret", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    uint64_t version = 0;
    int checked = cpstate_check_snapshot(data, size, &version, err, sizeof err);
    cpstate s;
    cpstate_init(&s);
    int loaded = cpstate_load_snapshot(&s, data, size, err, sizeof err);
    if (loaded == 0) {
        CHECK(checked == 0);
        CHECK(s.loaded && s.version == version && s.keys);
        gw_config *c = cpstate_build_config(&s, base, err, sizeof err);
        if (c) {
            CHECK(c->version == s.version && c->nmodels <= s.nmodels);
            for (size_t i = 0; i < c->nmodels; i++)
                CHECK(config_find_model(c, c->models[i].alias, strlen(c->models[i].alias)));
            config_unref(c);
        }
    }
    cpstate_free(&s);
    return 0;
}
