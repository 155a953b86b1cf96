// libFuzzer entry for the 'npy' target (body in targets.cpp).
#include "targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  atrous::fuzz::npy_one(data, size);
  return 0;
}
