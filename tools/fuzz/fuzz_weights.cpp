// libFuzzer entry for the 'weights' target (body in targets.cpp).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  atrous::fuzz::weights_one(data, size);
  return 0;
}
