// Concat through oneDNN concat: inputs in whatever layout they lie (blocked
// conv outputs stay blocked), and the output in the layout oneDNN derives from
// them when it may stay blocked, plain otherwise. f32 only.
//
// With plain inputs and a plain output it declines: concatenation is then one
// memcpy per row and input, which concat_ref does several times faster than
// oneDNN 2.6's plain concat (measured on 5 x [1, 256, 65, 65]).
// oneDNN's fast concat wants every input and the output in one layout (and
// channel blocks that line up); for anything else it falls back to a generic
// element loop that is ten times slower than copying. So when the inputs as
// they lie would get that fallback, inputs whose layout differs are first
// reordered (into scratch) to a common layout: the first blocked input's, then
// channels-last, then plain — the first layout that gets a fast concat wins.
#include "onednn/onednn.h"
#include "ops/op_registry.h"

namespace atrous {
namespace {

using dnnl::memory;
using namespace onednn;
using tag = memory::format_tag;

// Layouts worth trying as the common one, by rank: channels-last, then channel blocks.
std::vector<tag> candidate_tags(size_t rank) {
  switch (rank) {
    case 3:
      return {tag::acb, tag::aBc16b, tag::aBc8b};
    case 4:
      return {tag::acdb, tag::aBcd16b, tag::aBcd8b};
    case 5:
      return {tag::acdeb, tag::aBcde16b, tag::aBcde8b};
    default:
      return {};
  }
}

// The descriptor of `shape` in the layout `t`; tag::undef means plain.
memory::desc in_layout(const Shape& shape, tag t) {
  return t == tag::undef ? plain_desc(shape, DType::kF32) : memory::desc(to_dims(shape), memory::data_type::f32, t);
}

Result<std::unique_ptr<Kernel>> create(KernelContext& ctx) {
  if (ctx.out[0].dtype != DType::kF32) return KernelContext::decline("only f32");
  bool all_plain = !ctx.out_may_block[0];
  for (const TensorDesc& in : ctx.in) all_plain &= in.layout.plain();
  if (all_plain)
    return KernelContext::decline("plain layouts: concat_ref's row copies are faster than oneDNN's plain concat");
  const Shape& y = ctx.out[0].shape;
  int axis;
  normalize_axis(ctx.attrs<fb::ConcatT>().axis, y.size(), &axis);
  auto k = std::make_unique<PrimitiveKernel>();
  Status st = try_dnnl(
      [&] {
        std::vector<memory::desc> have;
        for (const TensorDesc& in : ctx.in) have.push_back(desc_of(in));
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

        // Common layouts to try when the inputs as they lie get the slow concat.
        std::vector<tag> targets;
        if (ctx.out_may_block[0]) {
          for (size_t i = 0; i < ctx.in.size() && targets.empty(); ++i) {
            if (ctx.in[i].layout.plain()) continue;
            for (tag t : candidate_tags(y.size()))
              if (in_layout(ctx.in[i].shape, t) == have[i]) targets.push_back(t);
          }
          if (!candidate_tags(y.size()).empty()) targets.push_back(candidate_tags(y.size())[0]);
        }
        targets.push_back(tag::undef);

        const memory::desc dst_any(to_dims(y), memory::data_type::f32, tag::any);
        dnnl::concat::primitive_desc pd(ctx.out_may_block[0] ? dst_any : plain_desc(y, DType::kF32), axis, have,
                                        cpu_engine(), attr);
        std::vector<memory::desc> srcs = have;
        for (size_t t = 0; t < targets.size() && is_reference_impl(pd); ++t) {
          for (size_t i = 0; i < srcs.size(); ++i) srcs[i] = in_layout(ctx.in[i].shape, targets[t]);
          pd = dnnl::concat::primitive_desc(in_layout(y, targets[t]), axis, srcs, cpu_engine(), attr);
        }
        if (is_reference_impl(pd)) throw std::runtime_error("only oneDNN's reference concat fits these layouts");
        k->detail_ = pd.impl_info_str();

        PrimitiveCall c{dnnl::concat(pd), {{DNNL_ARG_DST, pd.dst_desc(), {ArgSource::kOutput, 0}}}};
        for (size_t i = 0; i < srcs.size(); ++i) {
          ArgSource src{ArgSource::kInput, static_cast<int>(i)};
          if (srcs[i] != have[i]) {  // to the common layout first
            src = {ArgSource::kScratch, ctx.scratch(srcs[i].get_size())};
            k->calls.push_back(
                {dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), have[i], cpu_engine(), srcs[i])),
                 {{DNNL_ARG_FROM, have[i], {ArgSource::kInput, static_cast<int>(i)}}, {DNNL_ARG_TO, srcs[i], src}}});
            k->detail_ += " + reorder of input " + std::to_string(i);
          }
          c.args.push_back({DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i), srcs[i], src});
        }
        int sp = request_scratchpad(ctx, pd.scratchpad_desc());
        if (sp >= 0) c.args.push_back({DNNL_ARG_SCRATCHPAD, pd.scratchpad_desc(), {ArgSource::kScratch, sp}});
        k->calls.push_back(std::move(c));
        if (ctx.out_may_block[0]) {
          ctx.out[0].layout = layout_of(pd.dst_desc(), y, DType::kF32);
          ctx.out[0].bytes = pd.dst_desc().get_size();
        }
      },
      "concat_onednn");
  if (!st.ok()) return st;
  return std::unique_ptr<Kernel>(std::move(k));
}

}  // namespace

extern const KernelDef kConcatOnednn;
const KernelDef kConcatOnednn = {"concat_onednn", true, create};

}  // namespace atrous
