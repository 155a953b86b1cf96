// .npz archives (numpy.savez / savez_compressed): a zip of .npy files. Used by
// `atrous convert --check` for reference inputs and outputs.
//
// The archive is untrusted: libzip checks the zip structure, every member's
// size is checked against the limit before it is read, and each member is
// parsed by the same .npy parser as `atrous run` (npy.h).
//
//   ATROUS_ASSIGN_OR_RETURN(auto arrays, atrous::convert::load_npz("inputs.npz"));
//   for (auto& [name, tensor] : arrays) ...   // names without ".npy", in archive order
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "atrous/status.h"
#include "atrous/tensor.h"

namespace atrous::convert {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Every member ending in ".npy"; other members are an error naming them.
Result<NamedTensors> load_npz(const std::string& path, uint64_t max_member_bytes = uint64_t{16} << 30);

}  // namespace atrous::convert
