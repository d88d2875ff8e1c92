/* inbound_util: the pieces the inbound adapters share (inbound.c defines
 * them; responses_in.c uses them too). Errors are 400s naming a param. */
#ifndef GW_INBOUND_UTIL_H
#define GW_INBOUND_UTIL_H

#include "chat.h"

#define MAX_MESSAGES 4096
#define MAX_PARTS    1024
#define MAX_TOOLS    512

typedef struct in_ctx {
    chat_req   *r;
    char       *msg;
    size_t      msglen;
    const char **param;
} in_ctx;

static inline gw_str S(const json_value *v) { return v && v->type == JSON_STRING ? (gw_str){ v->str, v->str_len } : (gw_str){ NULL, 0 }; }
static inline gw_str span(const char *src, const json_value *v) { return (gw_str){ src + v->start, v->end - v->start }; }

/* Writes the message and param; always -1. */
int       inb_bad(in_ctx *c, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
chat_msg *inb_add_msg(in_ctx *c, chat_role role, size_t max_parts);
int       inb_append_system(in_ctx *c, const char *s, size_t n);
/* "data:image/png;base64,AAAA" -> media type and data; 0 if not such a URL, -1 malformed. */
int       inb_split_data_url(gw_str url, chat_part *p);
/* Text of a string or an array of parts with a "text" (joined with '\n'). */
int       inb_text_of(in_ctx *c, const json_value *v, const char *param, gw_str *out);
/* Optional number in [lo, hi]: 0 absent or set (*has = 1), -1 bad. */
int       inb_number(in_ctx *c, const json_value *root, const char *k, double lo, double hi, int *has, double *out);
/* Optional integer in [lo, hi]: 1 set, 0 absent, -1 bad. */
int       inb_integer(in_ctx *c, const json_value *v, const char *k, long lo, long hi, long *out);

#endif
