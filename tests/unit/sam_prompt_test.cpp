// Segment Anything prompts without a model: the strict text parsers behind
// `atrous segment --point/--box`, the checks decode() makes, and the map to the
// model's input frame (tools/fuzz/fuzz_prompt.cpp fuzzes the same functions).
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "atrous/sam.h"

namespace atrous::test {
namespace {

// The status is an InvalidArgument whose message contains `text` and stays short.
void refused(const Status& st, const std::string& text) {
  INFO(st.to_string());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find(text) != std::string::npos);
  CHECK(st.message().size() < 300);
}

TEST_CASE("parse_sam_point reads X,Y and X,Y,LABEL", "[sam][prompt]") {
  auto p = parse_sam_point("12,34");
  REQUIRE(p.ok());
  CHECK(p->x == 12.0f);
  CHECK(p->y == 34.0f);
  CHECK(p->label == 1);
  p = parse_sam_point("12.5,3e1,0");
  REQUIRE(p.ok());
  CHECK(p->x == 12.5f);
  CHECK(p->y == 30.0f);
  CHECK(p->label == 0);
  p = parse_sam_point("0.25,.5,1");
  REQUIRE(p.ok());
  CHECK(p->y == 0.5f);
  CHECK(p->label == 1);
  p = parse_sam_point("-1,5");  // parses; check_sam_prompt says it is outside the image
  REQUIRE(p.ok());
  CHECK(p->x == -1.0f);
  p = parse_sam_point("1E+2,2.e-1");
  REQUIRE(p.ok());
  CHECK(p->x == 100.0f);
  CHECK(p->y == 0.2f);
}

TEST_CASE("parse_sam_point refuses malformed text with a clear error", "[sam][prompt]") {
  const std::string form = "expected X,Y or X,Y,LABEL";
  for (const char* t : {"nan,1", "NaN,1", "1,nan", "inf,1", "-inf,1", "1,infinity", "0x10,1", "+1,2", "a,b",
                        "1.2.3,4", "1e,2", "e5,2", ".,2", "-,2", "1,2e+"}) {
    INFO(t);
    refused(parse_sam_point(t).status(), "is not a decimal number");
    refused(parse_sam_point(t).status(), form);
  }
  refused(parse_sam_point(" 1,2").status(), "number 1 ' 1' is not a decimal number");
  refused(parse_sam_point("1,2 ").status(), "number 2 '2 ' is not a decimal number");
  refused(parse_sam_point("1,,2").status(), "number 2 is empty");
  refused(parse_sam_point(",1").status(), "number 1 is empty");
  refused(parse_sam_point("1,2,3,4").status(), "found 4 fields");
  refused(parse_sam_point("12").status(), "found 1 field");
  refused(parse_sam_point("1;2").status(), "found 1 field");
  refused(parse_sam_point("1 2").status(), "found 1 field");
  refused(parse_sam_point("").status(), "the text is empty");
  refused(parse_sam_point("1e999,0").status(), "'1e999' is out of float's range");
  refused(parse_sam_point("0,-1e39").status(), "out of float's range");
  // The label is 0 or 1, spelled so.
  refused(parse_sam_point("5,5,2").status(), "LABEL must be 1 (foreground) or 0 (background), got '2'");
  refused(parse_sam_point("5,5,1.0").status(), "LABEL must be 1");
  refused(parse_sam_point("5,5,-1").status(), "LABEL must be 1");
  refused(parse_sam_point("5,5,").status(), "LABEL must be 1");
  refused(parse_sam_point("5,,1").status(), "number 2 is empty");
  refused(parse_sam_point("5,x,1").status(), "'x' is not a decimal number");
}

TEST_CASE("parse_sam_point and parse_sam_box stay short and fast on huge text", "[sam][prompt]") {
  const std::string commas(1000000, ',');
  refused(parse_sam_point(commas).status(), "found 1000001 fields");
  refused(parse_sam_box(commas).status(), "found 1000001 fields");
  const std::string digits(100000, '7');
  refused(parse_sam_point(digits + ",1").status(), "out of float's range");
  refused(parse_sam_point(digits + ",1").status(), "(100000 characters)");
  refused(parse_sam_point("1," + std::string(100000, 'x')).status(), "is not a decimal number");
  refused(parse_sam_point("1,1e" + std::string(100000, '9')).status(), "out of float's range");
  const std::string tiny = "0." + std::string(100000, '0') + "1";
  refused(parse_sam_point(tiny + ",1").status(), "out of float's range");  // underflow, not a silent 0
  refused(parse_sam_point("1e-50,1").status(), "out of float's range");
  std::string many;
  for (int i = 0; i < 100000; ++i) many += "1,";
  refused(parse_sam_box(many + "1").status(), "found 100001 fields");
}

TEST_CASE("parse_sam_box reads X0,Y0,X1,Y1 strictly", "[sam][prompt]") {
  auto b = parse_sam_box("1,2.5,30,4e1");
  REQUIRE(b.ok());
  CHECK(b->x0 == 1.0f);
  CHECK(b->y0 == 2.5f);
  CHECK(b->x1 == 30.0f);
  CHECK(b->y1 == 40.0f);
  const std::string form = "expected X0,Y0,X1,Y1";
  refused(parse_sam_box("1,2,3").status(), form);
  refused(parse_sam_box("1,2,3").status(), "found 3 fields");
  refused(parse_sam_box("1,2,3,4,5").status(), "found 5 fields");
  refused(parse_sam_box("1,2,3,nan").status(), "'nan' is not a decimal number");
  refused(parse_sam_box("1,2,3,inf").status(), "is not a decimal number");
  refused(parse_sam_box("1,2,,4").status(), "number 3 is empty");
  refused(parse_sam_box("1,2,3,4,").status(), "found 5 fields");
  refused(parse_sam_box("1,2,3,1e999").status(), "out of float's range");
  refused(parse_sam_box("").status(), "the text is empty");
}

TEST_CASE("check_sam_prompt refuses what decode refuses", "[sam][prompt]") {
  const int W = 640, H = 480;
  SamPrompt ok;
  ok.points = {{0, 0, 1}, {639.5f, 479.5f, 0}};
  ok.has_box = true;
  ok.box = {0, 0, 640, 480};
  CHECK(check_sam_prompt(ok, W, H, 256).ok());

  refused(check_sam_prompt(SamPrompt{}, W, H, 256), "no prompt");
  refused(check_sam_prompt(ok, 0, H, 256), "image size 0x480 is empty");
  auto point = [](float x, float y, int label) {
    SamPrompt p;
    p.points = {{x, y, label}};
    return p;
  };
  refused(check_sam_prompt(point(640, 3, 1), W, H, 256), "point 1 (640, 3) is outside the 640x480 image");
  refused(check_sam_prompt(point(-1, 3, 1), W, H, 256), "outside the 640x480 image");
  refused(check_sam_prompt(point(3, 480, 1), W, H, 256), "outside");
  refused(check_sam_prompt(point(std::nanf(""), 3, 1), W, H, 256), "outside");
  refused(check_sam_prompt(point(3, std::numeric_limits<float>::infinity(), 1), W, H, 256), "outside");
  refused(check_sam_prompt(point(1, 1, 2), W, H, 256), "label 2");
  refused(check_sam_prompt(point(1, 1, -1), W, H, 256), "label -1");

  SamPrompt box;
  box.has_box = true;
  box.box = {10, 10, 5, 20};
  refused(check_sam_prompt(box, W, H, 256), "top-left then bottom-right");
  box.box = {0, 0, 641, 10};
  refused(check_sam_prompt(box, W, H, 256), "outside");
  box.box = {0, 0, std::nanf(""), 10};
  refused(check_sam_prompt(box, W, H, 256), "outside");

  SamPrompt many;
  many.points.assign(kSamMaxPoints, SamPoint{1, 1, 1});
  CHECK(check_sam_prompt(many, W, H, 256).ok());
  many.points.push_back(SamPoint{1, 1, 1});
  refused(check_sam_prompt(many, W, H, 256), "at most 1024");

  SamPrompt mask = point(1, 1, 1);
  mask.mask_input = Tensor::zeros(DType::kF32, {1, 1, 3, 3});
  refused(check_sam_prompt(mask, W, H, 256), "mask_input must be f32 [1, 1, 256, 256]");
  CHECK(check_sam_prompt(mask, W, H, 0).ok());  // 0: mask_input not checked
  mask.mask_input = Tensor::zeros(DType::kF32, {1, 256, 256});
  CHECK(check_sam_prompt(mask, W, H, 256).ok());
  mask.mask_input = Tensor::zeros(DType::kI64, {1, 1, 256, 256});
  refused(check_sam_prompt(mask, W, H, 256), "mask_input");

  // Sides beyond float's exact integers are compared exactly.
  const int big = (1 << 24) + 1;
  CHECK(check_sam_prompt(point(16777216.0f, 0, 1), big, 1, 0).ok());
}

TEST_CASE("sam_resized_size is ResizeLongestSide's shape", "[sam][prompt]") {
  int w = 0, h = 0;
  REQUIRE(sam_resized_size(640, 480, 1024, &w, &h).ok());
  CHECK(w == 1024);
  CHECK(h == 768);
  REQUIRE(sam_resized_size(300, 200, 64, &w, &h).ok());
  CHECK(w == 64);
  CHECK(h == 43);  // 42.67 rounds up
  REQUIRE(sam_resized_size(1, 1, 1024, &w, &h).ok());
  CHECK(w == 1024);
  CHECK(h == 1024);
  refused(sam_resized_size(1, 100000, 1024, &w, &h), "resizes to 0x1024");
  refused(sam_resized_size(0, 5, 1024, &w, &h), "image size 0x5 is empty");
  refused(sam_resized_size(5, 5, 0, &w, &h), "model input size 0");
}

TEST_CASE("sam_prompt_tensors maps prompts into the model's frame", "[sam][prompt]") {
  SamPrompt p;
  p.points = {{320, 240, 1}, {10, 20, 0}};
  Tensor c, l;
  REQUIRE(sam_prompt_tensors(p, 640, 480, 1024, 768, &c, &l).ok());
  REQUIRE(c.shape() == Shape{1, 3, 2});
  REQUIRE(l.shape() == Shape{1, 3});
  const float* cv = c.data<float>();
  const float* lv = l.data<float>();
  CHECK(cv[0] == 512.0f);
  CHECK(cv[1] == 384.0f);
  CHECK(cv[2] == 16.0f);
  CHECK(cv[3] == 32.0f);
  CHECK(cv[4] == 0.0f);  // the padding point
  CHECK(cv[5] == 0.0f);
  CHECK(lv[0] == 1.0f);
  CHECK(lv[1] == 0.0f);
  CHECK(lv[2] == -1.0f);

  p.has_box = true;
  p.box = {0, 0, 640, 480};
  REQUIRE(sam_prompt_tensors(p, 640, 480, 1024, 768, &c, &l).ok());
  REQUIRE(c.shape() == Shape{1, 4, 2});
  cv = c.data<float>();
  lv = l.data<float>();
  CHECK(cv[6] == 1024.0f);
  CHECK(cv[7] == 768.0f);
  CHECK(lv[2] == 2.0f);
  CHECK(lv[3] == 3.0f);

  refused(sam_prompt_tensors(p, 640, 480, 0, 768, &c, &l), "is empty");
  SamPrompt outside;
  outside.points = {{640, 0, 1}};
  refused(sam_prompt_tensors(outside, 640, 480, 1024, 768, &c, &l), "outside the 640x480 image");
}

}  // namespace
}  // namespace atrous::test
