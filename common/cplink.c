#include "cplink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cplink_pub_address(const char *rep, char *out, size_t outlen)
{
    if (!strncmp(rep, "ipc://", 6)) {
        if (!rep[6]) return -1;
        int n = snprintf(out, outlen, "%s.pub", rep);
        return n < 0 || (size_t)n >= outlen ? -1 : 0;
    }
    if (strncmp(rep, "tcp://", 6) && strncmp(rep, "tls+tcp://", 10)) return -1;
    const char *colon = strrchr(rep, ':');
    if (!colon || colon < strstr(rep, "://") + 3) return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || colon[1] == '\0' || port < 1 || port > 65534) return -1;
    int n = snprintf(out, outlen, "%.*s:%ld", (int)(colon - rep), rep, port + 1);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int cplink_uuid_parse(const char *s, unsigned char out[16])
{
    unsigned char tmp[16];
    int j = 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return 0;
            continue;
        }
        int hi = hexval(s[i]);
        if (hi < 0) return 0;
        int lo = hexval(s[++i]);
        if (lo < 0) return 0;
        tmp[j++] = (unsigned char)(hi << 4 | lo);
    }
    if (s[36] != '\0') return 0;
    if (out) memcpy(out, tmp, 16);
    return 1;
}

void cplink_uuid_format(const unsigned char id[16], char out[37])
{
    static const char hx[] = "0123456789abcdef";
    int j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
        out[j++] = hx[id[i] >> 4];
        out[j++] = hx[id[i] & 15];
    }
    out[j] = '\0';
}

int cplink_version_parse(const char *s, long v[3])
{
    const char *slash = strrchr(s, '/');
    if (slash) s = slash + 1;
    for (int i = 0; i < 3; i++) {
        char *end;
        if (*s < '0' || *s > '9') return -1;
        v[i] = strtol(s, &end, 10);
        if (v[i] > 100000 || (i < 2 ? *end != '.' : (*end && *end != '-' && *end != '+'))) return -1;
        s = end + (i < 2);
    }
    return 0;
}

int cplink_version_cmp(const long a[3], const long b[3])
{
    for (int i = 0; i < 3; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}
