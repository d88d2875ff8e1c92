/* request: the API routes and one request's life (see request.c). */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

struct worker;

/* Installs every route on the worker's evhtp server; -1 on failure. */
int request_register_routes(struct worker *w);
/* Frees the request states the worker kept for reuse (at exit). */
void request_pool_free(struct worker *w);

#endif
