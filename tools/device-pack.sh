#!/usr/bin/env bash
# Build, here, what the first device session runs, and pack it so that the device call needs no
# build (docs/executor.md, "A device session: what to run"):
#
#   tools/device-pack.sh          configure + build build-device/ (Release, RACKSIM_CUDA=ON,
#                                 sm_90a only), then fill .devicepkg/ (gitignored)
#   JOBS=N tools/device-pack.sh   build with N jobs (default 2: this machine is shared)
#
# .devicepkg/ mirrors the build tree's layout, so tools/device-session.sh runs it as a build:
#   racksim, tests/racksim_cuda_tests   stripped Release binaries (sm_90a device code only)
#   lib/                                the shared libraries they need that the device image
#                                       lacks (Boost.Program_options, yaml-cpp, fmt, and whatever
#                                       those pull in), found with ldd
#   MANIFEST.txt                        commit, flags, sizes, sha256, the ldd output
#   kernel-resources.txt                registers, stack and shared memory per kernel (when cuobjdump is here)
# Left out on purpose: glibc and libstdc++/libgcc_s (the image's own), and the CUDA libraries
# (libcudart, libcublas/libcublasLt, libnccl, libcuda, libnvidia-ml): the driver and the image's
# pip packages nvidia-cuda-runtime, nvidia-cublas and nvidia-nccl-cu13 provide them there.
# No data travels: the hardware and model catalogs are compiled in, and `racksim calibrate` reads
# only the measurement files it is given. The unit-test binary stays behind: it reads tests/data
# and examples/ through the absolute source path compiled into it, and CI runs it anyway.
# Fails if the pack is over 60 MiB (the device tool carries 64 MiB with the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-device}
PKG=.devicepkg
JOBS=${JOBS:-2}
LIMIT_MIB=60
t0=$SECONDS

echo "=== configure $BUILD (Release, RACKSIM_CUDA=ON, RACKSIM_CUDA_ARCHITECTURES=90a)"
# Configure every time: the commit that measurement files record is read at configure time.
mkdir -p "$BUILD"
# RACKSIM_MPI=OFF: the device has one GPU and no Open MPI; linking libmpi would make the pack
# carry it (and its plugins) for nothing. `racksim bench collectives --gpus 1` runs without it.
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRACKSIM_CUDA=ON -DRACKSIM_MPI=OFF \
      -DRACKSIM_CUDA_ARCHITECTURES=90a -DRACKSIM_WERROR=ON > "$BUILD/configure.log" 2>&1 ||
  { tail -30 "$BUILD/configure.log"; echo "device-pack: configure failed (log: $BUILD/configure.log)"; exit 1; }
grep -q '^RACKSIM_CUDA_ARCHITECTURES:STRING=90a$' "$BUILD/CMakeCache.txt" ||
  { echo "device-pack: $BUILD is not configured for sm_90a only"; exit 1; }
echo "=== build racksim, racksim_cuda_tests (-j$JOBS)"
cmake --build "$BUILD" -j"$JOBS" --target racksim racksim_cuda_tests
echo "build: $((SECONDS - t0)) s"

echo "=== pack $PKG"
rm -rf "$PKG"
mkdir -p "$PKG/lib" "$PKG/tests"
BINS=(racksim tests/racksim_cuda_tests)
for b in "${BINS[@]}"; do
  cp -f "$BUILD/$b" "$PKG/$b"
  strip --strip-unneeded "$PKG/$b" 2>/dev/null || echo "note: strip failed on $b; packed unstripped"
done

# Which of the binaries' libraries travel. ldd lists the whole tree (the libraries' own needs too).
skip_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libmvec\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libgcc_s\.so|libstdc\+\+\.so|libcudart|libcublas|libcublasLt|libnccl|libcuda\.so|libnvidia-ml|libnvrtc|libnvJitLink)'
missing=0
declare -A seen=()
for b in "${BINS[@]}"; do
  while read -r name arrow path _; do
    [[ -z "$name" ]] && continue
    if [[ "$arrow" == "=>" && "$path" == "not" ]]; then echo "device-pack: $b needs $name: not found here"; missing=1; continue; fi
    [[ "$arrow" == "=>" && -n "$path" ]] || continue
    [[ "$name" =~ $skip_re ]] && continue
    [[ -n "${seen[$name]:-}" ]] && continue
    seen[$name]=1
    cp -fL "$path" "$PKG/lib/$name"
    echo "packed lib/$name  (from $path)"
  done < <(ldd "$BUILD/$b")
done
[[ $missing == 0 ]] || exit 1

{
  echo "racksim device pack, made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
  echo "commit: $(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)"
  echo "build: $BUILD, Release, RACKSIM_CUDA=ON, RACKSIM_MPI=OFF, RACKSIM_CUDA_ARCHITECTURES=90a, RACKSIM_WERROR=ON"
  nvcc=$(grep -m1 -E '^(RACKSIM_NVCC|CMAKE_CUDA_COMPILER):' "$BUILD/CMakeCache.txt" | cut -d= -f2)
  echo "nvcc: ${nvcc:-?} ($("${nvcc:-nvcc}" --version 2>/dev/null | grep -m1 release))"
  echo "device code: $(grep -o -- '--generate-code=[^ ]*' "$BUILD/build.ninja" | sort -u | tr '\n' ' ')"
  echo "c++: $(grep '^CMAKE_CXX_COMPILER:' "$BUILD/CMakeCache.txt" | cut -d= -f2) $(c++ --version | head -1)"
  echo "glibc needed (highest GLIBC_ symbol version): $(objdump -T "$PKG"/racksim "$PKG"/tests/racksim_cuda_tests "$PKG"/lib/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
  echo "libstdc++ needed (highest GLIBCXX_): $(objdump -T "$PKG"/racksim "$PKG"/tests/racksim_cuda_tests "$PKG"/lib/* 2>/dev/null | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)"
  echo
  echo "sha256:"
  (cd "$PKG" && sha256sum racksim tests/racksim_cuda_tests lib/*)
  echo
  echo "sizes (bytes):"
  (cd "$PKG" && du -b racksim tests/racksim_cuda_tests lib/*)
  for b in "${BINS[@]}"; do echo; echo "ldd $b (here):"; ldd "$BUILD/$b"; done
} > "$PKG/MANIFEST.txt"

# Each kernel's registers, spill stack and shared memory in the packed code (tools/kernel_resources.py;
# cuobjdump from PyPI's nvidia-cuda-cuobjdump): the occupancy every measurement of this pack ran
# at, kept with the measurements (device-session.sh copies it). Skipped, saying so, without cuobjdump.
if python3 tools/kernel_resources.py "$BUILD"/exec/CMakeFiles/racksim_exec_cuda.dir/cuda/*.cu.o > "$PKG/kernel-resources.txt" 2>&1; then
  echo "packed kernel-resources.txt ($(grep -c '^sm_' "$PKG/kernel-resources.txt") kernels x architectures)"
else
  echo "note: no kernel-resources.txt: $(tail -1 "$PKG/kernel-resources.txt")"; rm -f "$PKG/kernel-resources.txt"
fi

bytes=$(du -sb "$PKG" | cut -f1)
mib=$(( (bytes + 1048575) / 1048576 ))
du -b "$PKG"/racksim "$PKG"/tests/racksim_cuda_tests "$PKG"/lib/* | sed 's/^/  /'
echo "device-pack: $PKG is $bytes bytes (~$mib MiB; limit $LIMIT_MIB MiB), $((SECONDS - t0)) s in all"
if (( bytes > LIMIT_MIB * 1048576 )); then
  echo "device-pack: $PKG is over $LIMIT_MIB MiB: it would not travel with the working tree"; exit 1
fi
echo "device-pack: carry ['.devicepkg'] in the device call (docs/executor.md)"
