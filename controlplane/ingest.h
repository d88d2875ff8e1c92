/* ingest: usage batches from data planes into spend_log.
 *
 * A UsageBatch (proto/gateway.proto) arrives on the REP socket (publish.c).
 * Every field is checked and bounded, the batch becomes one JSON array and
 * one statement, spend_log_insert_batch($1::jsonb), which claims request ids
 * in spend_request_ids and writes only new rows: a replayed batch inserts
 * nothing. The ack is built after that statement committed (autocommit), so
 * a data plane deletes its spooled copy only when the rows are durable.
 */
#ifndef CP_INGEST_H
#define CP_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "db.h"

/* Handles one request body (after the CPLINK_USAGE_TAG byte) and writes the
 * packed UsageAck into reply. scratch is reused between calls. */
void cp_ingest_usage(cp_dbconn *c, const uint8_t *data, size_t len, buf_t *scratch, buf_t *reply);

#endif
