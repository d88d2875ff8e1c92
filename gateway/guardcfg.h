/* guardcfg: the YAML `guardrails:` policies and who uses them.
 *
 * Policies are named and compiled once per config load; aliases
 * (models[].guardrails) and keys (keys[].guardrails, by key name) refer to
 * them. A request gets the alias's policies first, then the key's, each
 * policy once: all of them apply, in that order (a block from any one
 * blocks; masks compose).
 */
#ifndef GW_GUARDCFG_H
#define GW_GUARDCFG_H

#include <stddef.h>
#include <yaml.h>

#include "guard.h"

typedef struct guard_set guard_set;

/* The list under `guardrails:`; NULL with "guardrails[0].custom[1].pattern:
 * missing closing parenthesis at offset 4" style reasons. */
guard_set *guard_set_parse(yaml_document_t *doc, yaml_node_t *list, char *err, size_t errlen);
void       guard_set_free(guard_set *s);

enum { GUARD_BIND_MODEL, GUARD_BIND_KEY };
/* Binds an alias's or key's policy names; -1 naming path[i] when a name is unknown. */
int  guard_set_bind(guard_set *s, int kind, const char *owner, char *const *names, size_t n, const char *path,
                    char *err, size_t errlen);
guard_set *guard_set_new(void);
/* The list as JSON or YAML text (the control plane's guardrails column). */
guard_set *guard_set_parse_text(const char *text, size_t len, char *err, size_t errlen);
/* Moves every policy of src into dst, bound to owner in src's order; src is freed. */
int  guard_set_adopt(guard_set *dst, guard_set *src, int kind, const char *owner, char *err, size_t errlen);

/* The request's chain (empty when nothing applies). s may be NULL. */
void guard_set_chain(const guard_set *s, const char *alias, const char *key_name, guard_chain *out);

#endif
