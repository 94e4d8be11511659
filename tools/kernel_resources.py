#!/usr/bin/env python3
"""Registers, spill stack and shared memory of each kernel in a built object, per architecture.

Reads `cuobjdump --dump-resource-usage` (not in the CUDA toolkit's Debian install here; the PyPI
package nvidia-cuda-cuobjdump ships it: `pip install nvidia-cuda-cuobjdump`, or set CUOBJDUMP).
Prints one line per kernel and architecture, demangled names shortened to the kernel and its
template arguments, and each kernel's CTAs per SM as registers allow them at its block size when
that size is given (--threads): floor(65,536 / (ceil(regs / 8) x 8 x threads)), at most 32, the
limit the occupancy API adds shared memory and the launch's own bounds to. Used for
docs/executor.md ("Register spills"): the build refuses a spill (-Xptxas=-warn-spills under
-Werror), and this table says how close each kernel runs to its launch bounds.

Usage:
  python3 tools/kernel_resources.py build/exec/CMakeFiles/racksim_exec_cuda.dir/cuda/fp4_gemm_mma.cu.o \\
      --filter fp4_mma_kernel --threads 128
"""
import argparse
import os
import re
import shutil
import subprocess
import sys


def find_cuobjdump():
    if os.environ.get("CUOBJDUMP"):
        return os.environ["CUOBJDUMP"]
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:
        import nvidia  # the PyPI packages' namespace

        for base in nvidia.__path__:
            for sub in ("cu13/bin", "cuda_cuobjdump/bin"):
                path = os.path.join(base, sub, "cuobjdump")
                if os.path.exists(path):
                    return path
    except ImportError:
        pass
    sys.exit("kernel_resources: no cuobjdump (pip install nvidia-cuda-cuobjdump, or set CUOBJDUMP)")


def demangle_all(names):
    """Mangled name -> demangled, in one c++filt run (names as they are without c++filt)."""
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt or not names:
        return {n: n for n in names}
    out = subprocess.run([cxxfilt], input="\n".join(names) + "\n", capture_output=True, text=True).stdout.split("\n")
    return {n: (out[i].strip() if i < len(out) and out[i].strip() else n) for i, n in enumerate(names)}


def short(d):
    """`racksim::exec::cuda::(anonymous namespace)::fp4_mma_kernel<1, 1, false>(...)` -> `fp4_mma_kernel<1, 1, false>`."""
    d = re.sub(r"\(anonymous namespace\)::", "", d)
    depth, cut = 0, len(d)
    for i, ch in enumerate(d):  # drop the parameter list: the first '(' outside template brackets
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            cut = i
            break
    d = d[:cut]
    return d.split("::")[-1] if "<" not in d else re.sub(r"^.*::(?=[^:<]*<)", "", d)


def ctas_by_registers(regs, threads):
    per_thread = max(8, (regs + 7) // 8 * 8)
    return min(32, 65536 // (per_thread * threads))


def parse(text):
    arch = None
    rows = []
    pending = None
    for line in text.splitlines():
        m = re.search(r"arch = (sm_\w+)", line)
        if m:
            arch = m.group(1)
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            pending = m.group(1)
            continue
        m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", line)
        if m and pending:
            rows.append((arch, pending, *map(int, m.groups())))
            pending = None
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("objects", nargs="*")
    ap.add_argument("--dump", action="append", default=[], help="a saved `cuobjdump --dump-resource-usage` output to read instead")
    ap.add_argument("--filter", default="", help="keep kernels whose mangled name contains this")
    ap.add_argument("--threads", type=int, default=0, help="block size, for the CTAs per SM registers allow")
    a = ap.parse_args()
    if not a.objects and not a.dump:
        ap.error("give an object file or --dump FILE")
    texts = [open(d).read() for d in a.dump]
    if a.objects:
        tool = find_cuobjdump()
        for obj in a.objects:
            out = subprocess.run([tool, "--dump-resource-usage", obj], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"kernel_resources: {tool} failed on {obj}: {out.stderr.strip()}")
            texts.append(out.stdout)
    rows = [r for text in texts for r in sorted(parse(text)) if a.filter in r[1]]
    names = demangle_all(sorted({r[1] for r in rows}))
    framed = set()
    for arch, name, reg, stack, shared, local in rows:
        occ = f"  {ctas_by_registers(reg, a.threads)} CTAs/SM by registers" if a.threads else ""
        print(f"{arch}  regs {reg:3d}  stack {stack:4d}  shared {shared:6d}{occ}  {short(names[name])}")
        if stack > 0:
            framed.add(name)
    if framed:  # after the table, on stdout: one stream, in order
        print(f"kernel_resources: {len(framed)} kernel(s) with a stack frame (a spill, or a local array), on some architecture")


if __name__ == "__main__":
    main()
