/* fuzz target: the ollama provider's answer parser and stream decoder (see provider_fuzz.h). */
#include "provider_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_provider(&provider_ollama, data, size, 1u << 20);
}
