/* pricing: what a request cost, from the usage the provider reported.
 *
 * A built-in table gives USD per million input, cached-input and output
 * tokens for the common upstream models. A deployment resolves its price
 * once, at config load (pricing_resolve), so a request only multiplies.
 *
 * Lookup of an upstream model name (case-insensitive):
 *   1. drop a path ("models/gemini-1.5-pro", "meta-llama/llama-4-scout-..."
 *      -> the part after the last '/'), a Bedrock cross-region prefix
 *      ("us.", "eu.", "apac.", "global.") and a Bedrock vendor prefix
 *      ("anthropic.", "meta.", "amazon.", "mistral.", "cohere.");
 *   2. an exact entry;
 *   3. else the longest entry that is a prefix of the name and is followed in
 *      it by '-', '@' or ':' (dated and versioned ids: "gpt-4o-2024-08-06"
 *      -> gpt-4o, "claude-3-5-sonnet@20240620" -> claude-3-5-sonnet,
 *      "claude-sonnet-4-20250514-v1:0" -> claude-sonnet-4). '.' is not a
 *      boundary, so "gpt-4.5-preview" never prices as "gpt-4".
 *   Unknown models cost 0 (logged once per deployment at load).
 *
 * Deployment overrides (YAML and admin API: input_cost_per_mtok,
 * cached_input_cost_per_mtok, output_cost_per_mtok) replace the table's
 * value component by component. The mock provider has no price of its own:
 * it is looked up by its model name like any other (a mock deployment named
 * "gpt-4o-mini" costs what gpt-4o-mini costs; "mock-1" costs 0) unless
 * overridden.
 *
 * Costs are integers of 1e-10 USD, so the response header, the usage event
 * and the control plane's sums agree to the last digit.
 */
#ifndef GW_PRICING_H
#define GW_PRICING_H

#include <stddef.h>
#include <stdint.h>

#include "usage.h"

typedef struct gw_price {
    double input;          /* USD per 1M prompt tokens (uncached) */
    double cached_input;   /* USD per 1M cached prompt tokens */
    double output;         /* USD per 1M completion tokens */
} gw_price;

/* Overrides as configured; a component < 0 is "not set". */
typedef struct gw_price_override {
    double input, cached_input, output;
} gw_price_override;

#define PRICE_OVERRIDE_NONE ((gw_price_override){ -1, -1, -1 })
#define PRICE_MAX_PER_MTOK  1e6      /* bound for configured values */

/* Table entry for an upstream model name; 1 found, 0 unknown (*out zeroed). */
int      pricing_lookup(const char *model, gw_price *out);
/* Table price overlaid with the override; returns 1 if the result came from
 * the table or an override, 0 when the model is unknown and nothing is set. */
int      pricing_resolve(const char *model, const gw_price_override *ov, gw_price *out);
/* Cost in 1e-10 USD. Cached tokens are part of prompt_tokens (OpenAI's
 * convention) and are billed at the cached rate. Never negative; saturates. */
int64_t  pricing_cost_e10(const gw_price *p, const usage_t *u);
/* "0.0000123400": fixed 10 decimals, no printf. Returns the length written
 * (out needs 32 bytes). */
size_t   pricing_format_usd(int64_t cost_e10, char out[32]);

#endif
