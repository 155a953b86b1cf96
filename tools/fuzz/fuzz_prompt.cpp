// libFuzzer entry for the 'prompt' target (body in targets.cpp).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  atrous::fuzz::prompt_one(data, size);
  return 0;
}
