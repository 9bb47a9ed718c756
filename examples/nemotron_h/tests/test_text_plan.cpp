// The text side of nemotron_h_run's plan (runner/run_plan.hpp, runner/prompt_file.hpp): text
// prompts encoded with the checkpoint's tokenizer, --chat's first turn in its chat format,
// prompt files (lines and JSONL), sampling settings and the argument conflicts. No GPU.
#include <catch2/catch.hpp>

#include <fstream>

#include "model_test_util.hpp"
#include "runner/prompt_file.hpp"
#include "run_plan_test_util.hpp"
#include "runner/run_plan.hpp"

using namespace nemotron_h;
using nh_test::data_dir;
using nh_test::error_of;
using nh_test::temp_dir;
using nh_test::usage_error_of;

namespace {

run_args tiny_text() {
  run_args a;
  a.model = (data_dir() / "tiny").string();
  a.gen = 5;
  return a;
}

void write(const std::filesystem::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

}  // namespace

TEST_CASE("text plan: --prompt is encoded with the checkpoint's tokenizer, BOS first", "[run_plan][text]") {
  run_args a = tiny_text();
  a.prompts = {"Hello there", "The sea"};
  const run_plan p = make_run_plan(a);
  REQUIRE(p.tokenizer);
  REQUIRE(p.prompts.size() == 2);
  const auto ids = p.tokenizer->encode("Hello there", {.add_special_tokens = true});
  CHECK(p.prompts[0] == std::vector<int>(ids.begin(), ids.end()));
  CHECK(p.prompts[0].front() == 1);  // <s>
  CHECK(p.stop_ids == std::vector<int>{2});  // config.json's eos_token_id
  CHECK(p.limits.num_slots == 2);
  CHECK(p.limits.max_decode_steps == 5);
  CHECK_FALSE(p.limits.sampling);
  // Each sequence gets its own stream from the one --seed.
  CHECK(p.text_prompts[0].sampling.seed != p.text_prompts[1].sampling.seed);
  const std::string plan = format_plan(p, a);
  CHECK_THAT(plan, Catch::Contains("tokenizer.json (384 ids)") && Catch::Contains("stop    ids [2]") &&
                       Catch::Contains("sequence 1: greedy"));
}

TEST_CASE("text plan: --chat renders the first turn in the checkpoint's chat format", "[run_plan][text]") {
  run_args a = tiny_text();
  a.chat = true;
  a.prompts = {"Hi"};
  a.system = "Be brief.";
  a.temperature = 0.7f;
  a.top_p = 0.9f;
  const run_plan p = make_run_plan(a);
  REQUIRE(p.chat);
  CHECK(*p.chat == text::chat_style::nemotron_h);
  const text::chat_format f(*p.chat, *p.tokenizer);
  const auto ids = p.tokenizer->encode(f.first_turn(std::string("Be brief."), "Hi", false));
  REQUIRE(p.prompts.size() == 1);
  CHECK(p.prompts[0] == std::vector<int>(ids.begin(), ids.end()));
  CHECK(p.stop_ids == std::vector<int>{2, 12});  // eos and the end of turn
  CHECK(p.limits.sampling);
  CHECK(p.limits.max_context == 4096);
  CHECK_THAT(format_plan(p, a), Catch::Contains("chat format nemotron-h (from the chat_template") &&
                                    Catch::Contains("temperature 0.7, top-p 0.9"));
  // No --prompt: the turns come from the terminal.
  a.prompts.clear();
  const run_plan q = make_run_plan(a);
  CHECK(q.prompts.empty());
  CHECK_THAT(format_plan(q, a), Catch::Contains("none yet"));
  a.chat_format = "chatml";  // the tiny tokenizer has no <|im_end|>
  CHECK_THAT(error_of([&] { (void)make_run_plan(a); }), Catch::Contains("needs the token <|im_start|>"));
}

TEST_CASE("text plan: prompt files, lines or JSONL with per-prompt settings", "[run_plan][text]") {
  temp_dir d("prompts");
  sampling_settings def;
  def.max_tokens = 9;
  write(d.path / "p.txt", "first line\r\n\n  second  \n");
  auto lines = read_prompt_file(d.path / "p.txt", def);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].text == "first line");
  CHECK(lines[1].text == "  second  ");
  CHECK(lines[1].where == (d.path / "p.txt").string() + ":3");
  CHECK(lines[1].sampling.max_tokens == 9);

  write(d.path / "p.jsonl",
        R"({"prompt": "a", "temperature": 0.5, "top_k": 40, "seed": 3, "stop": "x"})" "\n"
        R"({"prompt": "b", "max_tokens": 2, "stop": ["y", "z"], "min_p": 0.1, "top_p": 0.8})" "\n");
  auto js = read_prompt_file(d.path / "p.jsonl", def);
  REQUIRE(js.size() == 2);
  CHECK(js[0].sampling.temperature == 0.5f);
  CHECK(js[0].sampling.top_k == 40);
  CHECK(js[0].own_seed);
  CHECK(js[0].sampling.stop == std::vector<std::string>{"x"});
  CHECK(js[0].sampling.max_tokens == 9);
  CHECK(js[1].sampling.max_tokens == 2);
  CHECK(js[1].sampling.stop == std::vector<std::string>{"y", "z"});
  CHECK_FALSE(js[1].own_seed);

  auto err = [&](const std::string& body) {
    write(d.path / "bad.jsonl", body);
    return error_of([&] { (void)read_prompt_file(d.path / "bad.jsonl", def); });
  };
  CHECK_THAT(err("{\"prompt\": \"a\"}\n{\"prompt\": 3}\n"), Catch::Contains("bad.jsonl:2: \"prompt\" must be a string"));
  CHECK_THAT(err("{\"prompt\": \"a\", \"temp\": 1}\n"), Catch::Contains("bad.jsonl:1: unknown key \"temp\""));
  CHECK_THAT(err("{\"prompt\": \"a\", \"top_p\": 0}\n"), Catch::Contains("bad.jsonl:1: top_p 0 is out of range"));
  CHECK_THAT(err("{\"prompt\": \"a\", \"top_k\": 1.5}\n"), Catch::Contains("\"top_k\" must be an integer"));
  CHECK_THAT(err("{\"max_tokens\": 3}\n"), Catch::Contains("bad.jsonl:1: no \"prompt\""));
  CHECK_THAT(err("{\"prompt\": \"a\"\n"), Catch::Contains("bad.jsonl:1: invalid JSON"));
  CHECK_THAT(err("[1]\n"), Catch::Contains("must be an object"));
  CHECK_THAT(err("\n\n"), Catch::Contains("holds no prompt"));
  CHECK_THAT(error_of([&] { (void)read_prompt_file(d.path / "missing.txt", def); }), Catch::Contains("cannot be read"));

  run_args a = tiny_text();
  a.prompt_file = (d.path / "p.jsonl").string();
  const run_plan p = make_run_plan(a);
  CHECK(p.prompts.size() == 2);
  CHECK(p.limits.sampling);  // line 1 samples
  CHECK(p.limits.max_decode_steps == 5);
  CHECK(p.text_prompts[0].sampling.seed == 3);  // its own seed, as given
}

TEST_CASE("text plan: conflicting or out-of-range arguments are usage errors", "[run_plan][text]") {
  run_args a = tiny_text();
  a.prompts = {"x"};
  a.prompt_ids = "1,2";
  CHECK_THAT(usage_error_of(a), Catch::Contains("--prompt-ids gives token ids"));
  a = tiny_text();
  a.prompts = {"x"};
  a.check = true;
  CHECK_THAT(usage_error_of(a), Catch::Contains("--check compares token-id runs"));
  a = tiny_text();
  a.chat = true;
  a.mode_name = "compare";
  CHECK_THAT(usage_error_of(a), Catch::Contains("--chat runs one mode"));
  a = tiny_text();
  a.chat = true;
  a.prompts = {"a", "b"};
  CHECK_THAT(usage_error_of(a), Catch::Contains("at most one --prompt"));
  a = tiny_text();
  a.system = "s";
  CHECK_THAT(usage_error_of(a), Catch::Contains("need text prompts"));
  a = tiny_text();
  a.temperature = 0.8f;
  CHECK_THAT(usage_error_of(a), Catch::Contains("token-id runs are greedy"));
  a = tiny_text();
  a.prompts = {"x"};
  a.temperature = -1.0f;
  CHECK_THAT(usage_error_of(a), Catch::Contains("temperature -1 is out of range"));
  a.temperature = 1.0f;
  a.min_p = 2.0f;
  CHECK_THAT(usage_error_of(a), Catch::Contains("min_p 2 is out of range"));
  a.min_p = 0.0f;
  a.max_context = 8;
  CHECK_THAT(usage_error_of(a), Catch::Contains("--max-context 8"));
}

TEST_CASE("text plan: a preset needs --tokenizer, which must fit the vocabulary", "[run_plan][text]") {
  run_args a;
  a.model = "tiny";
  a.prompts = {"Hello"};
  CHECK_THAT(error_of([&] { (void)make_run_plan(a); }), Catch::Contains("presets have none") &&
                                                            Catch::Contains("--tokenizer"));
  a.tokenizer = (data_dir() / "tiny" / "tokenizer.json").string();
  const run_plan p = make_run_plan(a);
  CHECK(p.synthetic);
  CHECK(p.prompts.size() == 1);
  CHECK(p.stop_ids.empty());  // no checkpoint: no eos ids
  a.tokenizer = (data_dir() / "tokenizer" / "golden" / "tokenizer.json").string();  // 4100 ids > 384
  CHECK_THAT(error_of([&] { (void)make_run_plan(a); }),
             Catch::Contains("the tokenizer has 4100 ids but the model's vocabulary is 384"));
  a.tokenizer = "/nonexistent/tokenizer.json";
  CHECK_THAT(error_of([&] { (void)make_run_plan(a); }), Catch::Contains("/nonexistent/tokenizer.json: no tokenizer there"));
}
