/* responses: the gateway's side of the OpenAI Responses API.
 *
 * POST /v1/responses goes through request.c like any chat (always
 * translated: responses_in.c in, render_responses.c out); this file adds
 * what the Responses API keeps between requests: previous_response_id
 * (the stored conversation comes first), storing answers (store: true, the
 * default) and GET / DELETE /v1/responses/{id} and
 * GET /v1/responses/{id}/input_items, all per key, in respstore.h. */
#ifndef GW_RESPONSES_H
#define GW_RESPONSES_H

#include <stddef.h>

#include "config.h"
#include "json.h"
#include "providers/chat.h"

struct worker;

/* The request in the chat form, the previous response first. 0 ok; else the
 * client's status (400, 404) with a message and param. */
int  responses_prepare(chat_req *q, const json_value *root, const char *body, const gw_key *key,
                       char *msg, size_t msglen, const char **param);
/* Keeps a finished answer (the response object the client got) when the
 * request asked to store it. */
void responses_keep(const chat_req *q, const char *id, const char *response, size_t len);
/* The output guardrails changed the answer after it was kept: keep what the
 * client got instead (blocked: keep nothing). The id is read from it. */
void responses_rekeep(const chat_req *q, const char *response, size_t len, int blocked);
/* GET / DELETE /v1/responses/... on the worker's server; -1 on failure. */
int  responses_register_routes(struct worker *w);

#endif
