/* audit: one audit_log row per admin mutation, written in the mutation's own
 * transaction so the log can never disagree with the data.
 *
 * before/after are JSON documents the caller already masked: resource JSON as
 * the API shows it (no key hashes, no credential ciphertext or plaintext).
 * A configuration change also bumps config_version in the same transaction;
 * the row lock on that single counter orders concurrent mutations.
 */
#ifndef CP_AUDIT_H
#define CP_AUDIT_H

#include "db.h"

enum { CP_ROLE_VIEWER = 1, CP_ROLE_ADMIN = 2 };

typedef struct cp_actor {
    char id[40];        /* admin token id (UUID) */
    char name[201];     /* admin token name */
    int  role;          /* CP_ROLE_* */
} cp_actor;

/* 0 ok, -1 failed (the caller rolls back). before/after may be NULL. */
int cp_audit_record(cp_dbconn *c, const cp_actor *actor, const char *action,
                    const char *resource, const char *resource_id,
                    const char *before_json, const char *after_json, int config_change);

#endif
