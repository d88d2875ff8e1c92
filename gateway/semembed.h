/* semembed: embeds one prompt text for the semantic cache through an alias
 * of the config (its first deployment that serves embeddings), without
 * blocking the worker: upstream providers go through the worker's upstream
 * client, a local provider (mock) answers in-process. The callback never
 * runs from inside semembed_start.
 */
#ifndef GW_SEMEMBED_H
#define GW_SEMEMBED_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct upstream;
struct gw_model;

typedef struct semembed semembed;

/* v: a unit-length vector the callee now owns (free()), or NULL when the
 * call failed (error status, malformed answer, timeout). */
typedef void (*semembed_cb)(void *ud, float *v, uint32_t dim);

/* NULL when nothing could be started (no callback then). */
semembed *semembed_start(struct event_base *base, struct upstream *up, const struct gw_model *alias,
                         const char *text, size_t len, semembed_cb cb, void *ud);
/* No callback runs afterwards; e is freed. NULL is fine. */
void      semembed_cancel(semembed *e);

/* The first vector of an OpenAI embeddings list, normalized: malloc'd, or
 * NULL when the body is not one (hostile input: any bytes). */
float    *semembed_parse(const char *body, size_t len, uint32_t *dim);

#endif
