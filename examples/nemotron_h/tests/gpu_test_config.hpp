// The small model the runner's GPU tests share: every layer kind of `pattern`, shaped for the
// GPU kernels (head_dim 128, P 32, N 64, Hq/Hkv 4/2, D 256, V 512).
#pragma once

#include <string>

#include "model/config.hpp"
#include "model/layer_kinds.hpp"

namespace nh_test {

/// Sets `c`'s layer pattern and layer list (not validated: an 'E' layer needs the MoE fields).
inline void set_pattern(nemotron_h::model_config& c, const std::string& pattern) {
  c.pattern = pattern;
  c.layers.clear();
  for (char ch : pattern) c.layers.push_back(nemotron_h::find_kind(ch)->kind);
}

/// The shared shapes with layers `pattern`, validated (so no 'E': see moe_test_config).
inline nemotron_h::model_config gpu_test_config(const std::string& name, const std::string& pattern) {
  nemotron_h::model_config c = nemotron_h::preset("small");
  c.name = name;
  set_pattern(c, pattern);
  c.vocab_size = 512;
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 128;
  c.mamba_num_heads = 8;
  c.mamba_head_dim = 32;
  c.ssm_state_size = 64;
  c.n_groups = 2;
  c.validate();
  return c;
}

}  // namespace nh_test
