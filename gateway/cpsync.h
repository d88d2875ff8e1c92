/* cpsync: a worker's side of the control-plane push.
 *
 * The worker boots from state_dir (snapshot + journal) if there is one, then
 * follows the agent (cpagent.h) over a local nng SUB socket whose receive fd
 * sits in the worker's libevent loop. A delta on top of the current version
 * is applied in place (keys) or by building a new snapshot (models); anything
 * else (a gap, a reload, a heartbeat naming another version) reloads from
 * disk. The config pointer the worker serves from is swapped as on SIGHUP.
 */
#ifndef GW_CPSYNC_H
#define GW_CPSYNC_H

struct event_base;
struct gw_config;
typedef struct cpsync cpsync;

/* settings: the YAML config (a ref is taken). *slot is set to the config to
 * serve from (awaiting_cp when nothing is on disk) and replaced as versions
 * arrive. NULL on failure (logged). */
cpsync *cpsync_start(struct event_base *base, struct gw_config *settings, struct gw_config **slot);
/* SIGHUP: new YAML settings, same models and keys. */
void    cpsync_settings(cpsync *s, struct gw_config *settings);
void    cpsync_stop(cpsync *s);

#endif
