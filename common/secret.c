#include "secret.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_FILE_MAX 65536

static char *read_small_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot read secret file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *out = malloc(SECRET_FILE_MAX + 1);
    if (!out) { fclose(f); snprintf(err, errlen, "out of memory"); return NULL; }
    size_t n = fread(out, 1, SECRET_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > SECRET_FILE_MAX) {
        free(out);
        snprintf(err, errlen, "secret file %s is unreadable or larger than %d bytes", path, SECRET_FILE_MAX);
        return NULL;
    }
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ')) n--;
    out[n] = '\0';
    return out;
}

char *secret_resolve(const char *ref, char *err, size_t errlen)
{
    char *v;
    if (strncmp(ref, "env:", 4) == 0) {
        const char *val = getenv(ref + 4);
        if (!val || !*val) {
            snprintf(err, errlen, "environment variable %s is not set", ref + 4);
            return NULL;
        }
        v = strdup(val);
    } else if (strncmp(ref, "file:", 5) == 0) {
        return read_small_file(ref + 5, err, errlen);
    } else {
        v = strdup(ref);
    }
    if (!v) snprintf(err, errlen, "out of memory");
    return v;
}
