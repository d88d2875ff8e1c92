/* otlp: a finished request's spans as one record, and the two OTLP/HTTP
 * encodings of a batch of them (ExportTraceServiceRequest).
 *
 * trace.c fills one otlp_rec per sampled request (trace_end) and keeps it in
 * its ring; the exporter turns a run of records into one request body:
 *   protobuf  (otlp_pb.c, application/x-protobuf, the OTLP default): written
 *             by hand, fixed pieces as constants, every length a canonical
 *             varint;
 *   JSON      (otlp_json.c, application/json, the OTLP/JSON mapping: ids as
 *             lowercase hex, 64-bit integers as strings).
 * Both write the same spans: the root (SERVER, "POST <route>") and a child
 * per phase reached (INTERNAL gateway.auth / gateway.limits /
 * gateway.route, CLIENT "chat <upstream model>" for the upstream attempt),
 * with the same attributes in the same order.
 */
#ifndef GW_OTLP_H
#define GW_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "trace.h"

enum { OTLP_KIND_INTERNAL = 1, OTLP_KIND_SERVER = 2, OTLP_KIND_CLIENT = 3 };

/* String capacities (bytes, NUL included); longer values are cut at a UTF-8
 * boundary when the record is made. */
#define OTLP_MODEL_CAP    64
#define OTLP_PROVIDER_CAP 24
#define OTLP_REQID_CAP    40
#define OTLP_ERR_CAP      32
#define OTLP_ROUTE_MAX    64    /* a longer route path is cut (they are static and short) */

/* One sampled request: fixed size, the ring never allocates. */
typedef struct otlp_rec {
    uint8_t     trace_id[16];
    uint8_t     span_id[8];                /* the root span */
    uint8_t     parent_id[8];              /* the client's span; all zeros: none */
    uint8_t     child_id[TR_PHASES][8];    /* the span of each phase reached */
    int64_t     start_ns, end_ns;          /* the root, unix ns */
    int64_t     phase_ns[TR_PHASES][2];    /* each phase's [start, end], unix ns */
    uint8_t     phases;                    /* bit p set: phase p has a span */
    uint8_t     nspans;                    /* 1 + phases reached */
    uint8_t     has_parent, stream, cache_hit, up_failed;
    int         status, up_status;         /* up_status 0: no answer */
    int64_t     in_tok, out_tok;           /* < 0: unknown (no attribute) */
    const char *route;                     /* a static path, e.g. "/v1/chat/completions" */
    uint8_t     route_len, model_len, provider_len, upstream_model_len, request_id_len, err_len;
    char        model[OTLP_MODEL_CAP], provider[OTLP_PROVIDER_CAP], upstream_model[OTLP_MODEL_CAP];
    char        request_id[OTLP_REQID_CAP], err[OTLP_ERR_CAP];
} otlp_rec;

/* ---- protobuf ---- */

/* The constant bytes around a batch's spans: the Resource (service.name)
 * and the InstrumentationScope, made once per tracer. */
typedef struct otlp_pb {
    uint8_t *resource;      /* ResourceSpans.resource, tag and length included */
    size_t   resource_len;
    uint8_t *scope;         /* ScopeSpans.scope, tag and length included */
    size_t   scope_len;
    size_t   gap;           /* room left in front of the spans for the header */
} otlp_pb;

int  otlp_pb_init(otlp_pb *e, const char *service_name);   /* 0 ok, -1 out of memory */
void otlp_pb_free(otlp_pb *e);
/* A batch: begin, put each record, end. end returns where the body starts
 * inside b (the header is written just in front of the spans) and its
 * length, or NULL when b ran out of memory. */
void        otlp_pb_begin(const otlp_pb *e, buf_t *b);
void        otlp_pb_put(buf_t *b, const otlp_rec *r);
const char *otlp_pb_end(const otlp_pb *e, buf_t *b, size_t *len);

/* ---- JSON ---- */

void        otlp_json_begin(buf_t *b, const char *service_name);
void        otlp_json_put(buf_t *b, const otlp_rec *r, int first);   /* first: no comma before */
const char *otlp_json_end(buf_t *b, size_t *len);

#endif
