/* secret: resolves secret references from configuration.
 * "env:NAME" reads an environment variable, "file:/path" a file (trailing
 * newline trimmed), anything else is taken literally. */
#ifndef GW_SECRET_H
#define GW_SECRET_H

#include <stddef.h>

/* Returns a malloc'd value or NULL with a reason in err (never the secret). */
char *secret_resolve(const char *ref, char *err, size_t errlen);

#endif
