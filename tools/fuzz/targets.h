// The bodies of the fuzz targets, shared by the libFuzzer binaries
// (fuzz_*.cpp, tools/fuzz.sh) and the regression test that replays every
// saved input (tests/security/regression_test.cpp). Each must return
// normally for any bytes: errors are Status values, never crashes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace atrous::fuzz {

void model_one(const uint8_t* data, size_t size);    // open + plan every entry point
void weights_one(const uint8_t* data, size_t size);  // PyTorch zip/pickle, safetensors: open + read
void pickle_one(const uint8_t* data, size_t size);   // the restricted unpickler
void image_one(const uint8_t* data, size_t size);    // decode + preprocessing
void npy_one(const uint8_t* data, size_t size);      // .npy parsing

// By target name ("model", "weights", ...); false for an unknown name.
bool run_target(const std::string& name, const uint8_t* data, size_t size);

}  // namespace atrous::fuzz
