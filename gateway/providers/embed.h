/* embed: OpenAI embeddings requests and answers for providers with their
 * own embeddings APIs (Gemini batchEmbedContents, Ollama /api/embed). */
#ifndef GW_EMBED_H
#define GW_EMBED_H

#include <stddef.h>

#include "buf.h"
#include "json.h"

#define EMBED_MAX_INPUTS 2048

/* The request's inputs as strings: "input" a string or an array of strings
 * (token arrays cannot be sent to these providers). n set; -1 with a reason. */
int  embed_inputs(const json_value *root, const json_value **items, size_t *n, char *err, size_t errlen);
/* 1 when the client asked for base64 (the openai SDKs do by default). */
int  embed_wants_base64(const json_value *root);

/* The OpenAI list: begin, one vector per input (a JSON array of numbers from
 * the provider; -1 if it is not one), end with the model and prompt tokens. */
void embed_begin(buf_t *out);
int  embed_vector(buf_t *out, size_t index, const json_value *values, int base64);
void embed_end(buf_t *out, const char *model, long prompt_tokens);

#endif
