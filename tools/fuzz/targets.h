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
// SAM prompts as text, no model: a first line "W,H[,S]" (image size, model input side;
// otherwise 640x480 and 1024), then lines "p X,Y[,L]" (point), "b X0,Y0,X1,Y1" (box),
// "m N" (an N×N mask_input): parse, check, map to the model's frame.
void prompt_one(const uint8_t* data, size_t size);

// By target name ("model", "weights", "prompt", ...); false for an unknown name.
bool run_target(const std::string& name, const uint8_t* data, size_t size);

}  // namespace atrous::fuzz
