/* fuzz target: gateway/config.c, the YAML config (config_parse). A config
 * that loads must be usable: every model findable by its alias, every
 * deployment with a provider and a positive total weight. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    setenv("FUZZ_SECRET", "sk-fuzz-secret", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    err[0] = '\0';
    gw_config *c = config_parse((const char *)data, size, "fuzz.yaml", err, sizeof err);
    if (!c) {
        CHECK(memchr(err, '\0', sizeof err));
        return 0;
    }
    for (size_t i = 0; i < c->nmodels; i++) {
        const gw_model *m = &c->models[i];
        CHECK(m->alias && config_find_model(c, m->alias, strlen(m->alias)) == m);
        CHECK(m->ndeployments > 0);
        for (size_t j = 0; j < m->ndeployments; j++) CHECK(m->deployments[j].provider && m->deployments[j].model);
    }
    config_unref(c);
    return 0;
}
