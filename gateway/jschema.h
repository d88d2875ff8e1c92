/* jschema: a bounded JSON Schema validator for structured outputs.
 *
 * The subset OpenAI's strict mode accepts: type (a name or a list, "null"
 * included), properties, required, additionalProperties (false or a schema),
 * items, enum, const, anyOf (and allOf), $ref to "#", "#/$defs/..." or
 * "#/definitions/...", string minLength/maxLength, number minimum/maximum/
 * exclusiveMinimum/exclusiveMaximum/multipleOf, array minItems/maxItems.
 * Other keywords (description, title, pattern, format) are not checked.
 *
 * Schemas come from clients and instances from providers: both are hostile.
 * Work is bounded by a step budget (every schema applied to a value and every
 * value compared for enum/const costs steps) and by a nesting depth (which
 * also ends $ref cycles); beyond either the answer is "unchecked", never a
 * crash or a hang.
 */
#ifndef GW_JSCHEMA_H
#define GW_JSCHEMA_H

#include <stddef.h>

#include "json.h"

#define JSCHEMA_MAX_STEPS 200000
#define JSCHEMA_MAX_DEPTH 64

enum { JSCHEMA_INVALID = 0, JSCHEMA_VALID = 1, JSCHEMA_UNCHECKED = -1 };

/* Validates inst against schema (the root, for $ref). INVALID: path is the
 * first violation's JSON path ("$.items[2].price") and why says what is
 * wrong; UNCHECKED: why says why the schema could not be applied. */
int jschema_validate(const json_value *schema, const json_value *inst, char *path, size_t pathlen,
                     char *why, size_t whylen);

#endif
