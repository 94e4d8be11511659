#!/usr/bin/env python3
"""Writes hwmodels/data/efficiency/<gpu>.yaml: the foundation's seed efficiencies, derived from
the published measurements in ../shared/reference (no fitting; the calibration issue fits).

  python3 tools/seed_efficiency.py [--reference ../shared/reference]

GEMM: achieved / dense peak for the square GEMMs m=n=k in {1024, 4096, 8192, 16384} of
aic_kernels/gemm_trtllm_1.3.0rc20_subset.csv (kernel_source torch_flow), as points over the
GEMM's FLOPs. Memory: HBM stream / datasheet (hardware.md). Collectives: fixed latency and
per-step latency from the smallest-message all-reduce times at 2/4/8 GPUs, bandwidth
efficiency from the largest (512 MiB) all-reduce (aic_kernels/nccl_2.29.2.csv). One-shot
all-reduce (the serving engines' own small-message kernel): latency and NVLink efficiency fitted
by least squares to hardware.md's 8x H100 points, carried to the other GPUs.
"""
import argparse, csv, os, re, sys
from collections import defaultdict

AIC = {"h100-sxm": "h100_sxm", "h200-sxm": "h200_sxm", "b200": "b200_sxm", "b300": "b300_sxm",
       "gb200": "gb200", "gb300": "gb300"}
DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "nvfp4": "nvfp4"}
# HBM stream (triad) over datasheet bandwidth, hardware.md "Published microbenchmarks".
STREAM = {
    "h100-sxm": (2.97, 3.35, "hardware.md: HBM stream (triad) 2.97 TB/s on H100 (Azure AI-benchmarking-guide ND_H100_v5) of 3.35 TB/s", False),
    "h200-sxm": (4.15, 4.8, "hardware.md: HBM stream (triad) 4.15 TB/s on H200 (Azure AI-benchmarking-guide ND_H200_v5) of 4.8 TB/s", False),
    "gb200": (7.35, 8.0, "hardware.md: HBM stream (triad) 7.35 TB/s on GB200 (Microsoft Tech Community, ND GB200 v6) of 8 TB/s", False),
    "gb300": (7.37, 8.0, "hardware.md: HBM stream (triad) 7.37 TB/s on GB300 (Microsoft Tech Community, ND GB300 v6) of 8 TB/s", False),
    "b200": (7.35, 8.0, "carried from GB200 (same B200 die and HBM3e; hardware.md 7.35 of 8 TB/s): no B200 stream measurement in the reference", True),
    "b300": (7.37, 8.0, "carried from GB300 (same Blackwell Ultra die; hardware.md 7.37 of 8 TB/s): no B300 stream measurement in the reference", True),
}


# Custom one-shot all-reduce on 8x H100, hardware.md "Published microbenchmarks" (public SGLang
# measurements): ~6 us at 512 B, ~8 us at 32 KB, ~17 us at 256 KB (KB read as KiB). Each rank
# reads the 7 peers' buffers: t = latency + 7 x bytes / (nvlink x efficiency).
ONE_SHOT_H100 = [(512, 6.0), (32 * 1024, 8.0), (256 * 1024, 17.0)]
ONE_SHOT_RANKS = 8


def one_shot_fit(nvlink_gbs):
    xs = [(ONE_SHOT_RANKS - 1) * b / (nvlink_gbs * 1e9) * 1e6 for b, _ in ONE_SHOT_H100]  # us at efficiency 1
    ys = [t for _, t in ONE_SHOT_H100]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, 1.0 / slope


def peaks(path):
    """dense_peak figures (TFLOP/s) and nvlink bandwidth (GB/s) from a GPU catalog file."""
    text = open(path).read()
    out = {}
    block = text.split("dense_peak:")[1].split("\nhbm_capacity")[0]
    for dt, val in re.findall(r"\n  (\w+):\n    value: ([\d.]+)", block):
        out[dt] = float(val)
    nv = float(re.search(r"nvlink_bandwidth:\n  value: ([\d.]+)", text).group(1))
    return out, nv


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--reference", default=os.path.join(here, "..", "..", "shared", "reference"))
    args = ap.parse_args()
    root = os.path.join(here, "..")
    gemm = defaultdict(dict)
    with open(os.path.join(args.reference, "aic_kernels", "gemm_trtllm_1.3.0rc20_subset.csv")) as f:
        for r in csv.DictReader(f):
            if r["kernel_source"] != "torch_flow" or r["gemm_dtype"] not in DTYPES:
                continue
            m, n, k = int(r["m"]), int(r["n"]), int(r["k"])
            if m == n == k and m in (1024, 4096, 8192, 16384):
                gemm[(r["system"], DTYPES[r["gemm_dtype"]])][m] = float(r["latency_ms"]) * 1e-3
    nccl = defaultdict(dict)
    with open(os.path.join(args.reference, "aic_kernels", "nccl_2.29.2.csv")) as f:
        for r in csv.DictReader(f):
            if r["op_name"] != "all_reduce" or r["nccl_dtype"] != "half":
                continue
            nccl[(r["system"], int(r["num_gpus"]))][int(r["message_size_elems"]) * 2] = float(r["latency_ms"]) * 1e-3

    for gpu, aic in AIC.items():
        pk, nvlink = peaks(os.path.join(root, "hwmodels", "data", "gpus", gpu + ".yaml"))
        lines = [f"# Seed efficiencies of {gpu}, written by tools/seed_efficiency.py from shared/reference; do not edit by hand.",
                 f"gpu: {gpu}", "gemm:"]
        for dt in ("bf16", "fp8", "nvfp4"):
            pts = gemm.get((aic, dt))
            if not pts or dt not in pk:
                continue
            lines.append(f"  {dt}:")
            lines.append(f"    source: \"aic_kernels/gemm_trtllm_1.3.0rc20_subset.csv: {aic} {dt} torch_flow, m=n=k in 1024..16384; efficiency = 2mnk/latency / dense_peak.{dt} ({pk[dt]:g} TFLOP/s)\"")
            lines.append("    points:  # [GEMM FLOPs of one call, achieved / dense peak]")
            for s in sorted(pts):
                fl = 2.0 * s ** 3
                eff = fl / pts[s] / (pk[dt] * 1e12)
                lines.append(f"      - [{fl:.6g}, {eff:.4f}]  # {s}^3: {pts[s]*1e3:.4g} ms")
        ach, peak, src, carried = STREAM[gpu]
        lines += ["memory:", f"  source: \"{src}\"", f"  carried: {'true' if carried else 'false'}",
                  "  points:  # [bytes moved by the op, achieved / datasheet bandwidth]", f"    - [1.0e9, {ach/peak:.4f}]"]
        lines += ["attention_prefill:",
                  "  source: \"executor.md: FlashAttention-3 reaches 740 TFLOP/s FP16 on H100, 75% of 989" +
                  ("" if gpu.startswith("h") else "; carried from H100 (no Blackwell attention measurement in the reference)") + "\"",
                  f"  carried: {'false' if gpu.startswith('h') else 'true'}", "  efficiency: 0.75"]
        # Collectives: NCCL's own choice at each size, so these are "as measured" seeds.
        small = {n: min(v.values()) for (s, n), v in nccl.items() if s == aic}
        big = {}
        for (s, n), v in nccl.items():
            if s == aic:
                b = max(v)
                big[n] = (b, v[b])
        ns = sorted(small)
        # Ring all-reduce takes 2(n-1) steps: latency = base + 2(n-1) * step, least squares over n.
        xs = [2 * (n - 1) for n in ns]
        ys = [small[n] * 1e6 for n in ns]
        if len(ns) >= 2:
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            step = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            base = my - step * mx
        else:
            step, base = 0.0, ys[0]
        nmin, nmax = ns[0], ns[-1]
        b2, t2 = big[nmin]
        ring_eff = b2 / t2 * 2 * (nmin - 1) / nmin / (nvlink * 1e9)
        bN, tN = big[nmax]
        nvls_eff = bN / tN / (nvlink * 1e9)
        lines += ["collectives:",
                  f"  source: \"aic_kernels/nccl_2.29.2.csv {aic} all_reduce (half): smallest-message latency at {', '.join(map(str, ns))} GPUs "
                  f"({', '.join(f'{small[n]*1e6:.2f}' for n in ns)} us) fitted as base + 2(n-1)*step; ring efficiency from the {b2/2**20:.0f} MiB busbw at {nmin} GPUs, "
                  f"NVLS efficiency from the {bN/2**20:.0f} MiB algbw at {nmax} GPUs, over nvlink_bandwidth {nvlink:g} GB/s\"",
                  f"  base_latency_us: {base:.3f}", f"  step_latency_us: {step:.3f}",
                  f"  ring_bandwidth_efficiency: {ring_eff:.4f}",
                  f"  tree_bandwidth_efficiency: {ring_eff:.4f}  # no tree-only measurement: ring's, carried",
                  f"  nvls_bandwidth_efficiency: {nvls_eff:.4f}"]
        h100_nvlink = peaks(os.path.join(root, "hwmodels", "data", "gpus", "h100-sxm.yaml"))[1]
        lat, eff = one_shot_fit(h100_nvlink)
        own = gpu == "h100-sxm"
        lines += ["one_shot_all_reduce:",
                  "  source: \"hardware.md: custom one-shot all-reduce on 8x H100 (public SGLang measurements) ~6 us @512 B, ~8 us @32 KB, "
                  f"~17 us @256 KB, least-squares fit of latency + 7 x bytes / ({h100_nvlink:g} GB/s x efficiency)" +
                  ("" if own else f"; carried from H100 (no one-shot measurement of {gpu} in the reference), with {gpu}'s own nvlink_bandwidth {nvlink:g} GB/s") + "\"",
                  f"  carried: {'false' if own else 'true'}",
                  f"  latency_us: {lat:.3f}", f"  bandwidth_efficiency: {eff:.4f}"]
        out = os.path.join(root, "hwmodels", "data", "efficiency", gpu + ".yaml")
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print("wrote", out)


if __name__ == "__main__":
    sys.exit(main())
