/* log: secrets never reach a log line whole. */
#include <string.h>

#include "log.h"
#include "test.h"

static const char *redact(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in);
    if (n >= cap) n = cap - 1;
    memcpy(out, in, n);
    out[log_redact(out, n)] = '\0';
    return out;
}

static void test_redact(void)
{
    char b[256];
    CHECK_STR(redact("key sk-gw-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-xyz refused", b, sizeof b), "key sk-gw-*** refused");
    CHECK_STR(redact("upstream sk-proj-abcdefghijklmnop", b, sizeof b), "upstream sk-pro***");
    CHECK_STR(redact("Authorization: Bearer abc.def-ghi", b, sizeof b), "Authorization: Bearer ***");
    CHECK_STR(redact("task-queue sk-short ok", b, sizeof b), "task-queue sk-short ok");   /* not key-shaped */
    CHECK_STR(redact("bearer x", b, sizeof b), "bearer x");
    CHECK_STR(redact("nothing here", b, sizeof b), "nothing here");
    CHECK_STR(redact("sk-aaaaaaaaaaaaaaaa", b, sizeof b), "sk-aaa***");
}

int main(void)
{
    RUN(test_redact);
    TEST_MAIN_END();
}
