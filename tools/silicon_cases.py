#!/usr/bin/env python3
"""Writes examples/validation/silicon-heldout.yaml: held-out validation cases from measured
serving latencies (../shared/reference/aic_silicon_sample.csv, aiconfigurator's silicon sample),
the rows racksim can simulate: dense Llama-3.1 8B/70B and Qwen3-32B, and the MoE Qwen3-235B-A22B and
MiniMax-M2.5,
aggregated serving (prefill and decode on the same GPUs), pipeline 1, no attention data parallelism,
on 8x H100 SXM, 8x B200 or GB200, TensorRT-LLM, vLLM or SGLang.

  python3 tools/silicon_cases.py [--reference ../shared/reference]

Each row is one closed-loop run (`workload.scenario: concurrency`): batch_size clients, fixed
isl/osl, tp_size GPUs (one replica). Two cases per row: mean TTFT and mean TPOT (ms), as the
serving benchmarks aiconfigurator collects report them (mean per request; TPOT excludes the
first token). Nothing here is fitted: these rows are held out (the calibration set is mlperf.md's).
Serving settings are each backend's defaults (examples/validation/silicon/*.yaml say which).
"""
import argparse, csv, os, re, sys
from collections import Counter

MODELS = {"meta-llama/Llama-3.1-8B-Instruct": "llama3.1-8b", "meta-llama/Llama-3.1-70B": "llama3.1-70b",
          "Qwen/Qwen3-32B": "qwen3-32b", "nvidia/Qwen3-32B-NVFP4": "qwen3-32b",
          "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b", "MiniMaxAI/MiniMax-M2.5": "minimax-m2.5"}
MOE = {"qwen3-235b-a22b", "minimax-m2.5"}
# Checkpoints whose FP8 is block-scaled whatever the row's gemm_quant_mode says: MiniMax's and
# Qwen's own FP8 releases (config.json quantization_config: quant_method fp8, weight_block_size
# [128, 128]).
BLOCK_FP8 = {"MiniMaxAI/MiniMax-M2.5", "Qwen/Qwen3-235B-A22B-FP8"}
# Qwen's own FP8 checkpoint (128x128 block-scaled weights, dynamic 1x128 activations: its
# config.json quantization_config names no KV-cache scheme), so TensorRT-LLM's kv_cache dtype
# 'auto' keeps the KV cache in BF16.
KV_OVERRIDE = {"Qwen/Qwen3-235B-A22B-FP8": "bf16"}
# One replica of tp_size GPUs; a GB200 row runs inside one NVL72 rack's NVLink domain.
SYSTEMS = {"h100_sxm": "dgx-h100", "b200_sxm": "dgx-b200", "gb200": "gb200-nvl72"}
# Base scenario per backend (serving defaults); precision per the row's precision column. The
# KV cache: TensorRT-LLM's FP8 and NVFP4 checkpoints quantize it to FP8; vLLM's kv_cache_dtype
# default 'auto' keeps the model's BF16.
BASES = {"trtllm": "silicon/trtllm-defaults.yaml", "vllm": "silicon/vllm-defaults.yaml", "sglang": "silicon/sglang-defaults.yaml"}
PRECISION = {
    ("trtllm", "fp4"): ("nvfp4", "nvfp4", "fp8"),
    ("trtllm", "fp8"): ("fp8", "fp8", "fp8"),
    ("trtllm", ""): ("bf16", "bf16", "bf16"),  # rows that name no quantization: the BF16 checkpoint
    ("vllm", "fp4"): ("nvfp4", "nvfp4", "bf16"),
    ("vllm", "fp8"): ("fp8", "fp8", "bf16"),
    ("vllm", ""): ("bf16", "bf16", "bf16"),
    ("sglang", ""): ("bf16", "bf16", "bf16"),
}
REQUESTS_PER_CLIENT = 10


def concurrency(row):
    m = re.search(r"silicon_concurrency=(\d+)", row["silicon_data_source"])
    return m.group(1) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "examples", "validation", "silicon-heldout.yaml"))
    a = ap.parse_args()
    src = os.path.join(a.reference, "aic_silicon_sample.csv")
    rows = list(csv.DictReader(open(src, newline="")))
    kept, skipped = [], Counter()
    for r in rows:
        why = None
        if r["model_path"] not in MODELS: why = "model not in racksim's catalog"
        elif r["system"] not in SYSTEMS: why = "system"
        elif r["mode"] != "agg": why = "disaggregated serving"
        # The closed loop is batch_size clients on one replica: the row must say it ran that many
        # (silicon_concurrency in its source); some rows ran more clients than batch_size over
        # several workers whose count they do not record.
        elif concurrency(r) is None: why = "concurrency not recorded"
        elif concurrency(r) != r["batch_size"]: why = "concurrency differs from batch_size (several workers, count not recorded)"
        # attention_dp_size 0 and 1 both mean no attention data parallelism.
        elif r["pp_size"] not in ("", "1") or r["attention_dp_size"] not in ("", "0", "1"): why = "pipeline or attention-DP"
        elif (r["backend"], r["precision"]) not in PRECISION: why = "backend/precision"
        # MoE rows: TensorRT-LLM's layout, moe_tp_size x moe_ep_size = tp_size (racksim's ep divides tp).
        elif MODELS[r["model_path"]] in MOE and int(r["moe_tp_size"] or 1) * int(r["moe_ep_size"] or 1) != int(r["tp_size"]):
            why = "MoE layout other than moe_tp x moe_ep = tp"
        if why: skipped[why] += 1
        else: kept.append(r)
    names = Counter()
    out = ["# Held-out validation: measured mean TTFT and TPOT of Llama-3.1 8B/70B, Qwen3-32B, Qwen3-235B-A22B and MiniMax-M2.5 serving on",
           "# 8x H100 SXM, 8x B200 and GB200 (../shared/reference/aic_silicon_sample.csv, aiconfigurator's silicon sample,",
           "# Apache-2.0), written by tools/silicon_cases.py; do not edit by hand. Never used for fitting.",
           f"# {len(kept)} of {len(rows)} rows kept; skipped: " + "; ".join(f"{n} {w}" for w, n in sorted(skipped.items())) + ".",
           "# Run: racksim validate examples/validation/silicon-heldout.yaml --threshold 0 (reported, unguarded;",
           "# docs/validation.md, 'Held-out: measured serving latencies').",
           "cases:"]
    for r in kept:
        model, system = MODELS[r["model_path"]], SYSTEMS[r["system"]]
        w, act, kv = PRECISION[(r["backend"], r["precision"])]
        kv = KV_OVERRIDE.get(r["model_path"], kv)
        # gemm_quant_mode fp8_block: the block-scaled FP8 GEMMs (racksim's fp8_block format).
        if r["gemm_quant_mode"] == "fp8_block" or (w == "fp8" and r["model_path"] in BLOCK_FP8): w = act = "fp8_block"
        ep = int(r["moe_ep_size"] or 1) if model in MOE else 1
        c, tp, isl, osl = int(r["batch_size"]), int(r["tp_size"]), int(r["isl"]), int(r["osl"])
        ver = r["backend_version"] or "version not recorded"
        label = f"{r['backend']} {model} {system} {w} TP{tp}{f' EP{ep}' if ep > 1 else ''} c{c} {isl}/{osl}"
        names[label] += 1
        if names[label] > 1: label += f" #{names[label]}"
        group = f"{r['backend']} {model} {system} {w}"
        sets = [("system", system), ("model", model), ("precision.weights", w), ("precision.activations", act),
                ("precision.kv_cache", kv), ("deployment.tensor_parallel", tp)] + ([("deployment.expert_parallel", ep)] if ep > 1 else []) + [
                ("workload.concurrency", c),
                ("workload.input_tokens.value", isl), ("workload.output_tokens.value", osl)]
        for metric, col in (("ttft_mean_ms", "silicon_ttft_ms"), ("tpot_mean_ms", "silicon_tpot_ms")):
            out.append(f"  - name: \"{label} {metric.split('_')[0]}\"")
            out.append(f"    group: \"{group}\"")
            out.append(f"    scenario: {BASES[r['backend']]}")
            out.append(f"    requests: {REQUESTS_PER_CLIENT * c}")
            out.append(f"    metric: {metric}")
            out.append(f"    published: {float(r[col]):.6g}")
            out.append(f"    source: \"aic_silicon_sample.csv {r['id']} ({r['backend']} {ver})\"")
            out.append("    set: {" + ", ".join(f"{k}: \"{v}\"" for k, v in sets) + "}")
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"{a.out}: {len(kept)} rows, {2 * len(kept)} cases; skipped {sum(skipped.values())}", file=sys.stderr)


if __name__ == "__main__":
    main()
