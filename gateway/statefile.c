#include "statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAPSHOT_FILE "snapshot.pb"
#define JOURNAL_FILE  "journal.log"
#define SNAPSHOT_MAX  ((size_t)2 << 30)

static int path_in(const char *dir, const char *name, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int statefile_prepare_dir(const char *dir, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) {
        snprintf(err, errlen, "state_dir: path too long");
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST) goto fail;
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "state_dir %s: %s", tmp, strerror(errno));
    return -1;
}

int statefile_map_snapshot(const char *dir, const uint8_t **data, size_t *len, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (path_in(dir, SNAPSHOT_FILE, path, sizeof path) < 0) { snprintf(err, errlen, "state_dir: path too long"); return -1; }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || (size_t)st.st_size > SNAPSHOT_MAX) {
        snprintf(err, errlen, "%s: empty, unreadable or too large", path);
        close(fd);
        return -1;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) { snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno)); return -1; }
    *data = m;
    *len = (size_t)st.st_size;
    return 1;
}

void statefile_unmap(const uint8_t *data, size_t len)
{
    if (data) munmap((void *)data, len);
}

int statefile_write_snapshot(const char *dir, const void *data, size_t len, char *err, size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX], jpath[PATH_MAX];
    if (path_in(dir, SNAPSHOT_FILE, path, sizeof path) < 0 || path_in(dir, SNAPSHOT_FILE ".tmp", tmp, sizeof tmp) < 0 ||
        path_in(dir, JOURNAL_FILE, jpath, sizeof jpath) < 0) {
        snprintf(err, errlen, "state_dir: path too long");
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) { snprintf(err, errlen, "%s: %s", tmp, strerror(errno)); return -1; }
    if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        snprintf(err, errlen, "rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    /* Deltas older than the new snapshot are skipped by version anyway, so
     * truncating after the rename is safe whichever a reader sees. */
    if ((truncate(jpath, 0) < 0 && errno != ENOENT) || fsync_dir(dir) < 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int statefile_journal_append(const char *dir, const void *data, size_t len, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (len > STATEFILE_RECORD_MAX || path_in(dir, JOURNAL_FILE, path, sizeof path) < 0) {
        snprintf(err, errlen, "journal: record too large or path too long");
        return -1;
    }
    uint8_t *rec = malloc(12 + len);
    if (!rec) { snprintf(err, errlen, "out of memory"); return -1; }
    memcpy(rec, "GWJ1", 4);
    put_u32(rec + 4, (uint32_t)len);
    put_u32(rec + 8, crc32(data, len));
    memcpy(rec + 12, data, len);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int rc = fd < 0 || write_all(fd, rec, 12 + len) < 0 || fsync(fd) < 0 ? -1 : 0;
    if (rc < 0) snprintf(err, errlen, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    free(rec);
    return rc;
}

long statefile_journal_each(const char *dir, int (*cb)(void *ud, const uint8_t *rec, size_t len), void *ud)
{
    char path[PATH_MAX];
    if (path_in(dir, JOURNAL_FILE, path, sizeof path) < 0) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : -1;
    long n = 0;
    uint8_t hdr[12];
    uint8_t *rec = NULL;
    while (fread(hdr, 1, sizeof hdr, f) == sizeof hdr) {
        uint32_t len = get_u32(hdr + 4);
        if (memcmp(hdr, "GWJ1", 4) || len > STATEFILE_RECORD_MAX) break;
        uint8_t *r = realloc(rec, len ? len : 1);
        if (!r) break;
        rec = r;
        if (fread(rec, 1, len, f) != len || crc32(rec, len) != get_u32(hdr + 8)) break;
        n++;
        if (cb(ud, rec, len) < 0) break;
    }
    free(rec);
    fclose(f);
    return n;
}

long statefile_journal_size(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    if (path_in(dir, JOURNAL_FILE, path, sizeof path) < 0 || stat(path, &st) < 0) return 0;
    return (long)st.st_size;
}
