/* A tiny unit-test harness: each test binary prints "N passed, N failed". */
#ifndef GW_TEST_H
#define GW_TEST_H

#include <stdio.h>
#include <string.h>

static int t_passed, t_failed, t_cur_failed;

#define CHECK(cond) do { \
    if (!(cond)) { t_cur_failed = 1; \
        fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (!a_ || !b_ || strcmp(a_, b_) != 0) { t_cur_failed = 1; \
        fprintf(stderr, "  FAIL %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, \
                #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } \
} while (0)

#define RUN(fn) do { t_cur_failed = 0; fn(); \
    if (t_cur_failed) { t_failed++; fprintf(stderr, "not ok - %s\n", #fn); } \
    else { t_passed++; fprintf(stderr, "ok - %s\n", #fn); } \
} while (0)

#define TEST_MAIN_END() do { printf("%d passed, %d failed\n", t_passed, t_failed); \
    return t_failed ? 1 : 0; } while (0)

#endif
