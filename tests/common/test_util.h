// Helpers shared by the C++ tests: reference-case loading, running a model
// from bytes, and tolerance checks (max abs error <= tol * max |reference|).
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "atrous/atrous.h"
#include "atrous/npy.h"
#include "builder/graph_builder.h"

namespace atrous::test {

// Folder given by the environment variable (set by ctest), or fails the test.
std::string data_dir(const char* env_var);

struct RefCase {
  std::string dir, name, op;
  double tol = 1e-4;
  std::string graph_json;
  std::vector<std::string> inputs, constants, outputs;
  std::map<std::string, Tensor> tensors;  // by name: inputs, constants, expected outputs
};
std::vector<std::string> list_cases(const std::string& dir);
RefCase load_case(const std::string& dir, const std::string& name);
// The case's graph as model bytes.
std::vector<uint8_t> build_case_model(const RefCase& c);

// Unpacks the FlatBuffer of a valid model file, lets `edit` change it (hostile or
// mistaken files the builder would refuse to write), writes it back with the same weights.
std::vector<uint8_t> edit_model(const std::vector<uint8_t>& valid, const std::function<void(fb::ModelT&)>& edit);

struct RunOutput {
  Status status;
  std::vector<Tensor> outputs;
  PlanInfo plan;
};
RunOutput run_model(std::shared_ptr<const Model> model, const std::vector<std::pair<std::string, TensorView>>& inputs,
                    const SessionOptions& opts);

// Max abs error and max |reference|; CHECKs err <= tol * max|ref| (plus a tiny floor).
void check_close(const TensorView& got, const TensorView& ref, double tol, const std::string& what);

// n values uniform in [-scale, scale].
std::vector<float> uniform(size_t n, float scale, std::mt19937& rng);

// A one-node model run with only `kernel` allowed (on `threads` threads) and with the
// reference kernels: REQUIREs that `kernel` ran the node and CHECKs the outputs agree
// within 1e-4 × max |reference|. Returns the kernel's run (its plan has the detail).
RunOutput check_kernel_against_reference(std::shared_ptr<const Model> model,
                                         const std::vector<std::pair<std::string, TensorView>>& inputs,
                                         const std::string& kernel, int threads, const std::string& what);

}  // namespace atrous::test
