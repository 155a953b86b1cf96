// SamPredictor::decode in steady state, as an application's interactive loop sees it:
// one image embedding, then the same one-point prompt decoded again and again
// (masks postprocessed to the image size). Alternating rounds with the embedding's
// prepared tensors (decode_prepared, what decode() runs for prompts without a mask)
// and without them (the whole decoder), medians of each round.
//
//   build/bin/sam_decode_bench MODEL EMBEDDING.npy [--width 640] [--height 480] [--rounds 3]
//       [--decodes 50] [--threads 2] [--multimask 1]
//
// tools/bench/sam_bench.py leaves a model and emb.npy in /tmp/sam_bench.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "atrous/npy.h"
#include "atrous/sam.h"

using namespace atrous;

namespace {
int fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.to_string().c_str());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL EMBEDDING.npy [--width W] [--height H] [--rounds R] [--decodes N] [--threads T] [--multimask 0|1]\n", argv[0]);
    return 2;
  }
  int width = 640, height = 480, rounds = 3, decodes = 50, threads = 2, multimask = 1;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--width") width = v;
    else if (k == "--height") height = v;
    else if (k == "--rounds") rounds = v;
    else if (k == "--decodes") decodes = v;
    else if (k == "--threads") threads = v;
    else if (k == "--multimask") multimask = v;
    else return fail(invalid_argument("unknown option " + k));
  }
  if (rounds < 1 || decodes < 1) return fail(invalid_argument("--rounds and --decodes must be >= 1"));
  auto model = Model::open(argv[1]);
  if (!model.ok()) return fail(model.status());
  SamOptions o;
  o.threads = threads;
  auto sam = SamPredictor::create(*model, o);
  if (!sam.ok()) return fail(sam.status());
  auto t = load_npy(argv[2]);
  if (!t.ok()) return fail(t.status());
  auto t0 = std::chrono::steady_clock::now();
  auto emb = (*sam)->embedding_from(std::move(t).value(), width, height);
  const double prep_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!emb.ok()) return fail(emb.status());
  SamEmbedding whole = *emb;
  whole.prepared.clear();
  whole.prepared_id = 0;
  std::printf("embedding_from: %.2f ms (prepare_image including its first planning); %zu prepared tensors\n", prep_ms,
              emb->prepared.size());
  SamPrompt p;
  p.points = {{width * 0.78f, height * 0.78f, 1}};
  p.multimask = multimask != 0;
  for (int r = 0; r < rounds; ++r)
    for (const SamEmbedding* e : {&*emb, &whole}) {
      if (e == &*emb && emb->prepared.empty()) continue;  // a model without prepare_image
      std::vector<double> ms;
      for (int i = 0; i < decodes + 3; ++i) {  // 3 warm-up decodes (planning, staging)
        auto a = std::chrono::steady_clock::now();
        auto m = (*sam)->decode(*e, p);
        const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
        if (!m.ok()) return fail(m.status());
        if (i >= 3) ms.push_back(dt);
      }
      std::sort(ms.begin(), ms.end());
      std::printf("round %d %-15s decode(): median %6.2f ms, min %6.2f ms, p90 %6.2f ms (%d decodes, masks to %dx%d)\n", r,
                  e == &whole ? "whole decoder" : "decode_prepared", ms[ms.size() / 2], ms.front(), ms[ms.size() * 9 / 10],
                  decodes, width, height);
    }
  return 0;
}
