/* classify: how demanding a prompt looks, in microseconds, for aliases with
 * strategy classifier (a cheap tier for easy prompts, a flagship for hard).
 *
 * One pass over at most CLASSIFY_MAX_SCAN bytes of the request's text
 * (messages, system, prompt) counts cheap signals; each becomes a 0..1
 * value times its weight, and the score is the strongest of them plus half
 * of the rest, capped at 1:
 *
 *   length  0.5  log scale: 200 bytes ~0.2, 6 KiB and more 1
 *   code    0.7  fences, code keywords (def, class, #include, function, SELECT ...), ";\n"
 *   math    0.7  LaTeX, proof/equation words, digit-operator-digit
 *   steps   0.6  numbered lines, "step by step", "first ... then ... finally"
 *   tools   0.8  tools offered or tool results in the conversation
 */
#ifndef GW_CLASSIFY_H
#define GW_CLASSIFY_H

#include "json.h"

#define CLASSIFY_MAX_SCAN (32u << 10)

typedef struct classify_signals {
    double length, code, math, steps, tools;
} classify_signals;

/* Score in [0, 1] of a parsed request body (chat, messages or completions). */
double classify_request(const json_value *root, classify_signals *out);
/* Same over plain text (tests, completions). tools: 0 or 1. */
double classify_text(const char *text, size_t len, int tools, classify_signals *out);

#endif
