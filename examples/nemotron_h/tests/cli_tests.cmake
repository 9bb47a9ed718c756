# ctest entries that run the built nemotron_h_run (run_cli_case.cmake): each bad input gives
# its own exit status (exit_codes.hpp) and a message naming the problem, with no GPU, because
# every check comes before the GPU; --dry-run, --version and --help work without one.
set(_nh_cli_data ${CMAKE_CURRENT_LIST_DIR}/data)
set(_nh_cli_work ${CMAKE_CURRENT_BINARY_DIR}/cli_cases)

# nh_cli_case(name rc regex args... [PREPARE case] [KEEP file] [INPUT file]): args joined with '|'.
function(nh_cli_case name rc regex)
  cmake_parse_arguments(arg "" "PREPARE;KEEP;INPUT" "" ${ARGN})
  string(REPLACE ";" "|" joined "${arg_UNPARSED_ARGUMENTS}")
  string(MAKE_C_IDENTIFIER "${name}" dir)
  set(extra "")
  if(arg_PREPARE)
    list(APPEND extra -DPREPARE=${arg_PREPARE})
  endif()
  if(arg_KEEP)
    list(APPEND extra -DKEEP=${arg_KEEP})
  endif()
  if(arg_INPUT)
    list(APPEND extra -DINPUT=${arg_INPUT})
  endif()
  add_test(NAME "cli: ${name}"
           COMMAND ${CMAKE_COMMAND} -DEXE=$<TARGET_FILE:nemotron_h_run> "-DARGS=${joined}" -DRC=${rc}
                   "-DEXPECT=${regex}" -DWORK=${_nh_cli_work}/${dir} -DDATA=${_nh_cli_data} ${extra}
                   -P ${CMAKE_CURRENT_LIST_DIR}/run_cli_case.cmake)
  set_tests_properties("cli: ${name}" PROPERTIES LABELS cli)
endfunction()

# usage errors (2)
nh_cli_case("--mode bogus is a usage error" 2 "--mode 'bogus' is not a mode" --mode bogus)
nh_cli_case("--batch 0 is a usage error" 2 "--batch 0 is out of range" --batch 0)
nh_cli_case("--buckets 16,8 is a usage error" 2 "--buckets '16,8'.*sorted and unique" --buckets 16,8)
nh_cli_case("--buckets 0,8 is a usage error" 2 "--buckets '0,8'.*positive" --buckets 0,8)
nh_cli_case("--buckets above --max-prefill-tokens is a usage error" 2 "largest prefill bucket 4096 is above"
            --buckets 8,4096 --max-prefill-tokens 2048)
nh_cli_case("an unknown option is a usage error" 2 "frobnicate" --frobnicate)
nh_cli_case("a non-integer --batch is a usage error" 2 "--batch" --batch x)
nh_cli_case("--gen 0 is a usage error" 2 "--gen 0 is out of range" --gen 0)
nh_cli_case("--dry-run --dtype nvfp4 plans NVFP4 projections" 0
            "dtype nvfp4: 104 Mamba / MLP projections NVFP4 weight-only" --dry-run -m nano-9b-v2 --dtype nvfp4)
nh_cli_case("--dtype bogus is a usage error" 2 "--dtype 'bogus' is not a dtype: use bf16, fp8 or nvfp4" --dtype bogus)
nh_cli_case("--dtype fp8 with a checkpoint is a usage error naming the flag" 2
            "--dtype fp8 is for synthetic weights.*carries its own quantization" -m {DATA}/tiny --dtype fp8)
nh_cli_case("--dry-run --dtype fp8 plans FP8 projections with their memory" 0
            "dtype   fp8 .the bf16 model of the calibration first: weights 16"
            --dry-run -m nano-9b-v2 --dtype fp8)
nh_cli_case("a negative --seed is a usage error" 2 "--seed: must not be negative" --seed -1)
nh_cli_case("a negative --graph-execs is a usage error" 2 "--graph-execs -1 is out of range" --graph-execs -1)
nh_cli_case("--dry-run --graph-execs 2 plans shared graph executables" 0
            "graphs  the buckets share at most 2 executables per segment position" --dry-run --graph-execs 2)
nh_cli_case("--layers 0 is a usage error" 2 "--layers 0 is out of range: tiny has 6 layers" -m tiny --layers 0)
# bad inputs (3)
nh_cli_case("a model larger than one H200 plans with the memory it needs and says so" 0
            "nemotron-3-super-120b-a12b.*GiB needed.*more than one H200 holds"
            --dry-run -m nemotron-3-super-120b-a12b)
nh_cli_case("--model /nonexistent is bad input" 3 "/nonexistent.*neither a preset" --model /nonexistent)
nh_cli_case("--prompt-ids garbage is bad input" 3 "prompt 0: 'garbage' is not an integer" --prompt-ids garbage)
nh_cli_case("a prompt id outside the vocabulary is bad input" 3 "prompt 1, token 2: id 384 is outside the vocabulary"
            --model tiny --prompt-ids "1,2{SEMI}3,4,384")
nh_cli_case("a truncated config.json is bad input" 3 "config.json: invalid JSON" --model {WORK} PREPARE truncated_config)
nh_cli_case("a zero-byte model.safetensors is bad input" 3 "model.safetensors: truncated: 0 bytes"
            --model {WORK} PREPARE zero_safetensors)
nh_cli_case("--model DIR without a checkpoint is bad input" 3 "has no model.safetensors.*synthetic weights are only for presets"
            --model {WORK} PREPARE config_only)
nh_cli_case("--json into a missing directory is bad input" 3 "--json '/nonexistent-dir/out.json'.*does not exist"
            --json /nonexistent-dir/out.json)
nh_cli_case("--logits-out naming a directory is bad input" 3 "--logits-out '{WORK}' is a directory"
            --logits-out {WORK} PREPARE keep_file)
nh_cli_case("a text prompt on a preset without --tokenizer is bad input" 3 "presets have none.*--tokenizer"
            -m tiny -p Hello)
nh_cli_case("a bad JSONL prompt file is bad input naming the line and key" 3 "p.jsonl:2: unknown key \"temp\""
            -m {DATA}/tiny --prompt-file {WORK}/p.jsonl PREPARE bad_jsonl)
nh_cli_case("a checkpoint declaring NVFP4 whose weights are bf16 is bad input naming the tensor" 3
            "tensor 'backbone.layers.0.mixer.in_proj.weight' is BF16 but [^ ]*hf_quant_config.json declares NVFP4"
            --dry-run -m {WORK} PREPARE quantized_nvfp4)
nh_cli_case("a checkpoint declaring FP8 whose weights are bf16 is bad input naming the tensor" 3
            "tensor 'backbone.layers.0.mixer.in_proj.weight' is BF16 but [^ ]*hf_quant_config.json declares FP8"
            --dry-run -m {WORK} PREPARE quantized)
nh_cli_case("a tokenizer larger than the vocabulary is bad input" 3 "has 4100 ids but the model's vocabulary is 384"
            -m tiny -p Hello --tokenizer {DATA}/tokenizer/golden/tokenizer.json)
nh_cli_case("--temperature out of range is a usage error" 2 "temperature 200 is out of range"
            -m {DATA}/tiny -p Hello -t 200)
nh_cli_case("--prompt with --prompt-ids is a usage error" 2 "--prompt-ids gives token ids" -m {DATA}/tiny -p Hi -i 1,2)
nh_cli_case("sampling token ids is a usage error" 2 "token-id runs are greedy" -m tiny --top-k 5)
nh_cli_case("--chat with --mode compare is a usage error" 2 "--chat runs one mode" -m {DATA}/tiny --chat --mode compare)
# what works without a GPU (0)
nh_cli_case("--dry-run with a text prompt shows the tokenizer, stop ids and sampling" 0
            "prompts +1 sequence of [0-9]+ tokens \\(text\\).*text +tokenizer [^\n]*tiny/tokenizer.json \\(384 ids\\).*stop +ids \\[2\\].*sample +sequence 0: temperature 0.8, top-k 40, seed"
            --dry-run -m {DATA}/tiny -p "The sea is" -t 0.8 --top-k 40)
nh_cli_case("--dry-run --chat finds the chat format" 0
            "chat format nemotron-h \\(from the chat_template of [^\n]*tokenizer_config.json\\), thinking off.*stop +ids \\[2, 12\\]"
            --dry-run -m {DATA}/tiny --chat)
nh_cli_case("--dry-run on the tiny fixture prints the plan" 0
            "dry run: every check passed.*model +[^\n]*tiny/config.json: 6 layers.*model.safetensors \\([0-9]+ tensors.*buckets +prefill.*decode.*modes +auto.*memory"
            --dry-run --model {DATA}/tiny --prompt-ids "1,2,3{SEMI}4,5")
nh_cli_case("--dry-run on a preset says synthetic weights" 0
            "synthetic weights \\(preset nano-9b-v2, no checkpoint\\).*memory +[0-9.]+ GiB needed"
            --dry-run -m nano-9b-v2 -b 8 -n 16 --mode compare)
nh_cli_case("--dry-run --layers 1 runs the first layer of a MoE preset" 0
            "layers +--layers 1: the first 1 of the model's 52 layers" --dry-run -m nemotron-3-nano-30b-a3b --layers 1)
nh_cli_case("--weights DIR alone is --model DIR" 0 "weights .*tiny/model.safetensors" --dry-run --weights {DATA}/tiny)
nh_cli_case("--dry-run leaves an existing --json file untouched" 0 "json +.*keep.json"
            --dry-run --json {WORK}/keep.json PREPARE keep_file KEEP {WORK}/keep.json)
nh_cli_case("--version prints the project and CUDA versions" 0
            "nemotron_h_run \\(piecewise\\) ${PROJECT_VERSION}, built with CUDA [0-9]+\\.[0-9]+" --version)
nh_cli_case("--help lists the exit statuses" 0 "Exit status:.*4  no usable CUDA GPU" --help)
# past every check: a GPU runs it, or the no-GPU message says what it found (4)
nh_cli_case("without a GPU the message says what was found and what works" gpu
            "no usable CUDA GPU: .*Every check passed.*--dry-run.*host tests"
            -m tiny -b 1 --prompt-len 8 -n 2)
nh_cli_case("a chat with the tiny fixture streams text turn by turn" gpu
            "user> Hello, who are you\\?.*assistant> .*tokens.*first token.*user> Tell me about the sea.*assistant> .*chat +2 turns|no usable CUDA GPU"
            -m {DATA}/tiny --chat -n 12 -t 0.9 --top-p 0.95 PREPARE chat_turns INPUT {WORK}/turns.txt)
nh_cli_case("text prompts stream, several sequences labelled" gpu
            "\\[0\\] prompt: The sea.*\\[1\\] prompt: Hello.*\\[0\\] [0-9]+ tokens?, .*first token.*\\[1\\] [0-9]+ tokens?|no usable CUDA GPU"
            -m {DATA}/tiny -p "The sea" -p Hello -n 10 --mode compare)
