/* static: serves the admin UI (admin-ui/) at / on the admin listener.
 *
 * Files are read from a directory at request time (no build step, no copy in
 * the binary): an upgrade of the files is live on the next page load. Only
 * GET and HEAD of paths made of [A-Za-z0-9._-] segments, none starting with
 * a dot, with a known extension; the resolved real path must stay under the
 * directory (symlinks out of it are refused). Every answer carries a strict
 * Content-Security-Policy, nosniff, no framing, no referrer, and
 * "Cache-Control: no-cache" with an ETag, so browsers revalidate with a
 * cheap 304 and never run a stale UI against a newer API.
 */
#ifndef CP_STATIC_H
#define CP_STATIC_H

#include <stddef.h>

/* Called once before the HTTP server starts. dir NULL or missing: / answers
 * 404 "admin UI not installed" (logged as a warning). -1 on out of memory. */
int  cp_static_configure(const char *dir);
void cp_static_free(void);

/* Answers one GET/HEAD of path (already URL-decoded) on conn (a struct
 * MHD_Connection *). Returns the MHD_Result; *status is the HTTP status sent. */
int  cp_static_serve(void *conn, const char *path, const char *method, int *status);

/* The CSP every UI response carries (exposed for tests and docs). */
extern const char CP_STATIC_CSP[];

#endif
