/* auth: virtual keys. Only SHA-256 hashes are held; lookup is O(1) in the
 * snapshot's index with a constant-time compare of the hash. */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <evhtp.h>

#include "config.h"
#include "httputil.h"

/* The presented key: "Authorization: Bearer k", "x-api-key: k" (Anthropic
 * SDKs) or "api-key: k" (Azure SDKs). NULL if none. */
const char   *auth_extract_token(const http_req_headers *h);
/* The key, if usable (known, unexpired, unblocked); the result is valid only
 * until the next lookup or change of the key table: copy what you keep. */
const gw_key *auth_lookup(const gw_config *cfg, const char *token);
/* A stable id for state kept per key (rate limits, stored responses): "k:" +
 * the control plane's key id; YAML keys have none, so a hash of the name. */
void          auth_subject(const gw_key *k, char *out, size_t len);

#endif
