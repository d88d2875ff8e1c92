/* structout: structured outputs checked against the client's JSON schema.
 *
 * A chat request with response_format {type: "json_schema", json_schema:
 * {schema, strict: true}} gets its answer's content validated (jschema.h)
 * before anything is sent to the client; a violation is retried by the
 * request layer (router.schema_retries, default 1) and then answered 502
 * schema_validation_failed naming the first violation's JSON path.
 */
#ifndef GW_STRUCTOUT_H
#define GW_STRUCTOUT_H

#include <stddef.h>

#include "json.h"
#include "providers/provider.h"

/* The schema a chat body asks its answer to follow in strict mode, or NULL. */
const json_value *structout_schema(const json_value *root);

enum { STRUCTOUT_OK = 1, STRUCTOUT_VIOLATION = 0 };

/* Checks a provider's whole 2xx answer (its own dialect, read with
 * p->parse_response). VIOLATION with a message naming the JSON path; OK also
 * when there is nothing to check (tool calls, an unreadable answer: the
 * normal path reports that) or the schema is too large to check. */
int structout_check(const provider *p, const json_value *schema, const char *body, size_t len,
                    char *msg, size_t msglen);
/* Same for the content text itself (streams). */
int structout_check_text(const json_value *schema, const char *text, size_t len, char *msg, size_t msglen);

#endif
