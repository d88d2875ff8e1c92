/* sigv4: AWS's published "get-vanilla" example, a POST with a body and a
 * session token, and the double-encoded path Bedrock model ids need. */
#include "test.h"

#include <string.h>

#include "providers/sigv4.h"

static const char *line(const buf_t *b, int i)
{
    const char *p = b->data;
    while (i-- > 0) p += strlen(p) + 1;
    return p;
}

static void get_vanilla(void)
{
    /* aws-sig-v4-test-suite/get-vanilla: 2015-08-30T12:36:00Z */
    sigv4_request q = {
        .method = "GET", .url = "https://example.amazonaws.com/", .region = "us-east-1", .service = "service",
        .access_key_id = "AKIDEXAMPLE", .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        .now = 1440938160,
    };
    buf_t b; buf_init(&b);
    CHECK(sigv4_sign(&q, &b) == 2);
    CHECK_STR(line(&b, 0), "X-Amz-Date: 20150830T123600Z");
    CHECK_STR(line(&b, 1), "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                           "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    buf_free(&b);
}

static void session_token_and_content_type_are_signed(void)
{
    sigv4_request q = {
        .method = "POST", .url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        .content_type = "application/json", .body = "{}", .body_len = 2, .region = "us-east-1", .service = "bedrock",
        .access_key_id = "AKIDEXAMPLE", .secret_access_key = "secret", .session_token = "tok", .now = 1440938160,
    };
    buf_t b; buf_init(&b);
    CHECK(sigv4_sign(&q, &b) == 3);
    CHECK_STR(line(&b, 1), "X-Amz-Security-Token: tok");
    CHECK(strstr(line(&b, 2), "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=") != NULL);
    CHECK(strstr(b.data, "secret") == NULL || strstr(line(&b, 2), "secret") == NULL);   /* the secret never appears */
    buf_t c; buf_init(&c);
    q.body = "{ }"; q.body_len = 3;   /* another body: another signature */
    CHECK(sigv4_sign(&q, &c) == 3);
    CHECK(strcmp(line(&b, 2), line(&c, 2)) != 0);
    buf_free(&b); buf_free(&c);
}

static void refuses_without_credentials(void)
{
    sigv4_request q = { .method = "POST", .url = "https://h/", .region = "us-east-1", .service = "bedrock", .now = 1 };
    buf_t b; buf_init(&b);
    CHECK(sigv4_sign(&q, &b) == -1);
    buf_free(&b);
}

int main(void)
{
    RUN(get_vanilla);
    RUN(session_token_and_content_type_are_signed);
    RUN(refuses_without_credentials);
    TEST_MAIN_END();
}
