/* usageship: the agent's side of usage reporting (see usagelog.h for the
 * workers' side).
 *
 * A thread of the agent process drains state_dir/usage/ in name (= time)
 * order: it reads a few batch files (up to CPLINK_USAGE_EVENTS_MAX events),
 * fsyncs each, sends them as one UsageBatch request to the control plane's
 * REP socket (protobuf messages concatenate, so files are sent as they are,
 * without decoding and re-encoding), and deletes them only after a UsageAck
 * says the batch is committed. No ack (control plane away, Postgres down):
 * the files stay and are retried with backoff, in order, also after a
 * restart. A file that does not parse is renamed *.bad and skipped.
 */
#ifndef GW_USAGESHIP_H
#define GW_USAGESHIP_H

#include "config.h"
#include "cplinktls.h"

typedef struct usageship usageship;

/* NULL on failure (logged). cfg and tls must outlive the shipper. */
usageship *usageship_start(const gw_config *cfg, const cplink_tls *tls);
void       usageship_stop(usageship *s);
/* The agent found the link dead: drop the connection and dial anew (from
 * the agent's thread; a batch awaiting its ack is resent on the new one). */
int        usageship_redial(usageship *s, char *err, size_t errlen);

#endif
