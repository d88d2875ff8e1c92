#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define STATIC_MAX_FILE (8 * 1024 * 1024)
#define STATIC_MAX_PATH 256

const char CP_STATIC_CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; object-src 'none'";

static char *g_root;        /* realpath of the UI directory, or NULL */

static const struct { const char *ext, *type; } g_types[] = {
    { ".html",  "text/html; charset=utf-8" },
    { ".js",    "text/javascript; charset=utf-8" },
    { ".mjs",   "text/javascript; charset=utf-8" },
    { ".css",   "text/css; charset=utf-8" },
    { ".svg",   "image/svg+xml" },
    { ".png",   "image/png" },
    { ".ico",   "image/x-icon" },
    { ".json",  "application/json" },
    { ".txt",   "text/plain; charset=utf-8" },
    { ".woff2", "font/woff2" },
};

int cp_static_configure(const char *dir)
{
    free(g_root);
    g_root = NULL;
    if (!dir || !*dir) return 0;
    char *real = realpath(dir, NULL);
    struct stat st;
    if (!real) {
        if (errno == ENOMEM) return -1;
        log_warn("admin UI directory %s: %s; / answers 404", dir, strerror(errno));
        return 0;
    }
    if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
        log_warn("admin UI directory %s is not a directory; / answers 404", dir);
        free(real);
        return 0;
    }
    g_root = real;
    log_info("admin UI served from %s", g_root);
    return 0;
}

void cp_static_free(void)
{
    free(g_root);
    g_root = NULL;
}

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return NULL;
    for (size_t i = 0; i < sizeof g_types / sizeof g_types[0]; i++)
        if (strcmp(dot, g_types[i].ext) == 0) return g_types[i].type;
    return NULL;
}

/* 1 if path is "/" or "/seg/seg..." with segments of [A-Za-z0-9._-], none
 * empty or starting with '.' (so no "..", no hidden files). */
static int path_ok(const char *path)
{
    size_t n = strlen(path);
    if (n == 0 || n >= STATIC_MAX_PATH || path[0] != '/') return 0;
    if (n == 1) return 1;
    const char *p = path;
    while (*p == '/') {
        p++;
        if (*p == '.' || *p == '/' || *p == '\0') return 0;
        while (*p && *p != '/') {
            char c = *p++;
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-'))
                return 0;
        }
    }
    return *p == '\0';
}

static int add_common_headers(struct MHD_Response *resp, const char *ctype, const char *cache)
{
    return MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype) == MHD_YES &&
           MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache) == MHD_YES &&
           MHD_add_response_header(resp, "Content-Security-Policy", CP_STATIC_CSP) == MHD_YES &&
           MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") == MHD_YES &&
           MHD_add_response_header(resp, "X-Frame-Options", "DENY") == MHD_YES &&
           MHD_add_response_header(resp, "Referrer-Policy", "no-referrer") == MHD_YES;
}

static int reply_text(struct MHD_Connection *conn, int status, const char *text, int *status_out)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    int ok = add_common_headers(resp, "text/plain; charset=utf-8", "no-store") ? MHD_YES : MHD_NO;
    if (ok == MHD_YES && status == MHD_HTTP_METHOD_NOT_ALLOWED &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES)
        ok = MHD_NO;
    if (ok == MHD_YES) ok = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    *status_out = status;
    return ok;
}

/* Reads the whole regular file at real (at most STATIC_MAX_FILE bytes). */
static char *read_file(const char *real, struct stat *st, int *err_status)
{
    *err_status = 404;
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return NULL;
    char *data = NULL;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) goto out;
    if (st->st_size > STATIC_MAX_FILE) { *err_status = 500; goto out; }
    data = malloc((size_t)st->st_size + 1);
    if (!data) { *err_status = 500; goto out; }
    size_t got = 0;
    while (got < (size_t)st->st_size) {
        ssize_t n = read(fd, data + got, (size_t)st->st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { free(data); data = NULL; *err_status = 500; goto out; }
        got += (size_t)n;
    }
out:
    close(fd);
    return data;
}

int cp_static_serve(void *connp, const char *path, const char *method, int *status)
{
    struct MHD_Connection *conn = connp;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(conn, 405, "method not allowed\n", status);
    if (!g_root) return reply_text(conn, 404, "admin UI not installed (admin_ui_dir)\n", status);
    if (!path_ok(path)) return reply_text(conn, 404, "not found\n", status);
    const char *rel = strcmp(path, "/") == 0 ? "/index.html" : path;
    const char *ctype = content_type(rel);
    if (!ctype) return reply_text(conn, 404, "not found\n", status);

    char full[PATH_MAX];
    if (snprintf(full, sizeof full, "%s%s", g_root, rel) >= (int)sizeof full)
        return reply_text(conn, 404, "not found\n", status);
    char *real = realpath(full, NULL);
    size_t rootlen = strlen(g_root);
    if (!real || strncmp(real, g_root, rootlen) != 0 || real[rootlen] != '/') {
        free(real);
        return reply_text(conn, 404, "not found\n", status);
    }
    struct stat st;
    int err_status;
    char *data = read_file(real, &st, &err_status);
    free(real);
    if (!data)
        return reply_text(conn, err_status, err_status == 404 ? "not found\n" : "cannot read file\n", status);

    char etag[64];
    snprintf(etag, sizeof etag, "\"%llx-%llx-%llx\"", (unsigned long long)st.st_mtim.tv_sec,
             (unsigned long long)st.st_mtim.tv_nsec, (unsigned long long)st.st_size);
    const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    int not_modified = inm && strcmp(inm, etag) == 0;

    struct MHD_Response *resp;
    if (not_modified) {
        free(data);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer((size_t)st.st_size, data, MHD_RESPMEM_MUST_FREE);
        if (!resp) free(data);
    }
    if (!resp) return MHD_NO;
    int ok = add_common_headers(resp, ctype, "no-cache") &&
             MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag) == MHD_YES ? MHD_YES : MHD_NO;
    *status = not_modified ? 304 : 200;
    if (ok == MHD_YES) ok = MHD_queue_response(conn, (unsigned)*status, resp);
    MHD_destroy_response(resp);
    return ok;
}
