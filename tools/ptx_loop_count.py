#!/usr/bin/env python3
"""Static instruction count of a kernel's main loop, from PTX (no GPU needed).

For each kernel whose name contains the filter, finds the longest backward branch (the main loop)
and counts the PTX instructions between its label and the branch, by opcode. `mov` is left out
(register moves mostly vanish in SASS), as are inline-asm braces and .reg lines. PTX is not SASS:
ptxas fuses AND + OR into LOP3, for one; the count compares two versions of a loop, it does not
predict time. Used for the fused FP4 GEMM's bit order (docs/executor.md).

Usage:
  nvcc -DNDEBUG -Iexec/include -Icommon/include -Iworkloads/include -O3 -arch=sm_90a -std=c++20 \\
       -ptx exec/cuda/fp4_gemm_mma.cu -o /tmp/mma.ptx
  python3 tools/ptx_loop_count.py /tmp/mma.ptx fp4_mma_kernel
"""
import re
import sys


def kernels(path):
    text = open(path).read()
    parts = re.split(r"(?=\.(?:visible )?\.?entry )", text)
    for part in parts[1:]:
        yield re.match(r"\.(?:visible )?\.?entry (\S+)\(", part).group(1), part


def loop_count(body):
    lines = body.split("\n")
    labels = {}
    for i, line in enumerate(lines):
        m = re.match(r"^(\$L__\w+):", line)
        if m:
            labels[m.group(1)] = i
    best = None
    for i, line in enumerate(lines):
        m = re.search(r"bra(?:\.uni)?\s+(\$L__\w+);", line)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            a = labels[m.group(1)]
            if best is None or i - a > best[1] - best[0]:
                best = (a, i)
    if best is None:
        return 0, {}
    count, ops = 0, {}
    for line in lines[best[0]:best[1] + 1]:
        t = line.strip()
        if not t or t.startswith("//") or t.startswith("$") or t in ("{", "}") or t.lstrip("{").startswith(".reg"):
            continue
        t = t.lstrip("{").strip()
        words = t.split()
        op = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
        op = op.split(".")[0]
        if not op or op == "mov":
            continue
        count += 1
        ops[op] = ops.get(op, 0) + 1
    return count, ops


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: ptx_loop_count.py FILE.ptx [NAME_FILTER]")
    name_filter = sys.argv[2] if len(sys.argv) > 2 else ""
    for name, body in kernels(sys.argv[1]):
        if name_filter in name:
            n, ops = loop_count(body)
            top = ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:8])
            print(f"{n:5d}  {name}\n       {top}")


if __name__ == "__main__":
    main()
