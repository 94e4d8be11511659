#pragma once
// The tiny models the executor's tests run (unit and [cuda]): a Llama-shaped one and a MoE, small
// enough for a float64 reference, with every dimension a multiple of the NVFP4 block (16).

#include "racksim/workloads/model.hpp"

namespace racksim::test {

/// 2 layers, hidden 64, 4 query / 2 KV heads of 16, FFN 128, a prime vocabulary (97).
inline ModelConfig tiny_llama() {
  ModelConfig m;
  m.id = "tiny-llama";
  m.architecture = "llama";
  m.layers = 2;
  m.hidden = 64;
  m.heads = 4;
  m.kv_heads = 2;
  m.head_dim = 16;
  m.ffn = 128;
  m.vocab = 97;
  m.rope_theta = 10000.0;
  m.max_position = 256;
  m.norm_eps = 1e-5;
  return m;
}

/// tiny_llama with 4 experts of FFN 64, top 2 (Mixtral's routing).
inline ModelConfig tiny_moe() {
  ModelConfig m = tiny_llama();
  m.id = "tiny-moe";
  m.architecture = "mixtral";
  m.ffn = 64;
  m.rope_theta = 1e6;
  m.moe = {4, 2};
  return m;
}

/// tiny_llama with Qwen3's per-head QK-norm (architecture "qwen3": q_norm and k_norm over each
/// head's head_dim values before RoPE).
inline ModelConfig tiny_qwen3() {
  ModelConfig m = tiny_llama();
  m.id = "tiny-qwen3";
  m.architecture = "qwen3";
  m.rope_theta = 1e6;
  return m;
}

/// tiny_moe with Qwen3's QK-norm (architecture "qwen3_moe").
inline ModelConfig tiny_qwen3_moe() {
  ModelConfig m = tiny_moe();
  m.id = "tiny-qwen3-moe";
  m.architecture = "qwen3_moe";
  return m;
}

/// tiny_moe as MiniMax-M2 builds it (architecture "minimax_m2"): the QK-norm over all of a
/// layer's q and all its k at once, RoPE on 8 of each head's 16 dims (MiniMax-M2's 64 of 128),
/// and the biased sigmoid routing (moe_top_k_sigmoid).
inline ModelConfig tiny_minimax() {
  ModelConfig m = tiny_moe();
  m.id = "tiny-minimax";
  m.architecture = "minimax_m2";
  m.rotary_dim = 8;
  return m;
}

}  // namespace racksim::test
