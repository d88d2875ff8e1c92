/* responses: the gateway's side of the OpenAI Responses API.
 *
 * POST /v1/responses goes through request.c like any chat (always
 * translated: responses_in.c in, render_responses.c out); this file adds
 * what the Responses API keeps between requests: previous_response_id
 * (the stored conversation comes first), storing answers (store: true, the
 * default) and GET / DELETE /v1/responses/{id} and
 * GET /v1/responses/{id}/input_items, all per key, in respstore.h (this
 * node) and respredis.h (every node, when redis_url is set). */
#ifndef GW_RESPONSES_H
#define GW_RESPONSES_H

#include <stddef.h>

#include "config.h"
#include "json.h"
#include "providers/chat.h"

struct worker;

struct respredis;
struct respredis_op;

/* This worker's Redis tier (respredis.h), NULL for none; set once at start. */
void responses_set_redis(struct respredis *rr);

#define RESPONSES_PENDING 1
/* The answer of a pending prepare: status and message as responses_prepare's. */
typedef void (*responses_cb)(void *ud, int status, const char *msg, const char *param);
/* The request in the chat form, the previous response first. 0 ok; else the
 * client's status (400, 404) with a message and param; or RESPONSES_PENDING:
 * the previous response is not on this node and Redis was asked, cb runs
 * later (q, root and body must live until then; respredis_cancel(*wait)
 * when the request goes first). */
int  responses_prepare(chat_req *q, const json_value *root, const char *body, const gw_key *key,
                       char *msg, size_t msglen, const char **param, responses_cb cb, void *ud,
                       struct respredis_op **wait);
/* Keeps a finished answer (the response object the client got) when the
 * request asked to store it. */
void responses_keep(const chat_req *q, const char *id, const char *response, size_t len);
/* The output guardrails changed the answer after it was kept: keep what the
 * client got instead (blocked: keep nothing). The id is read from it. */
void responses_rekeep(const chat_req *q, const char *response, size_t len, int blocked);
/* GET / DELETE /v1/responses/... on the worker's server; -1 on failure. */
int  responses_register_routes(struct worker *w);

#endif
