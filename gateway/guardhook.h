/* guardhook: the external guard webhook.
 *
 * POSTs {"stage":"input","model":...,"text":...} to the policy's URL through
 * the worker's non-blocking upstream client (never blocking the loop), with
 * the policy's timeout as the total deadline, and reads the verdict
 * {"action":"allow|block|mask","reason":"...","mask":["text", ...]}
 * (answers are capped at 64 KiB; a mask list at 64 strings).
 */
#ifndef GW_GUARDHOOK_H
#define GW_GUARDHOOK_H

#include <stddef.h>

#include "upstream.h"

enum { HOOK_ALLOW, HOOK_BLOCK, HOOK_MASK, HOOK_ERROR };

#define HOOK_MAX_MASK 64

typedef struct guard_verdict {
    int          action;                  /* HOOK_* */
    char         reason[160];             /* the webhook's reason, or why it failed */
    const char  *mask[HOOK_MAX_MASK];     /* valid during the callback only */
    size_t       nmask;
} guard_verdict;

typedef void (*guard_hook_done)(void *ud, const guard_verdict *v);
typedef struct guard_hook guard_hook;

/* NULL if the call could not start (then cb never runs). */
guard_hook *guard_hook_start(upstream_t *up, const char *url, long timeout_ms, const char *model,
                             const char *text, size_t len, guard_hook_done cb, void *ud);
/* No callback after this. */
void        guard_hook_cancel(guard_hook *h);

/* The verdict from a webhook's answer body (exposed for tests). */
void        guard_hook_parse(const char *body, size_t len, guard_verdict *v, void **owner);
void        guard_hook_parse_free(void *owner);

#endif
