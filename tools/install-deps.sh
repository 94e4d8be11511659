#!/usr/bin/env bash
# Installs racksim's build dependencies from Debian 12 packages, if any is missing.
# The CUDA toolkit is not a Debian package here: RACKSIM_CUDA=AUTO uses /usr/local/cuda when present.
# Open MPI (libopenmpi-dev, and openmpi-bin for mpirun) is optional for the build (RACKSIM_MPI=AUTO):
# it gives `racksim bench collectives` its multi-process path and CI the 2-rank bootstrap test.
# python3 runs tools/exec_targets.py in its test (tests/cli/exec_targets.cmake).
set -euo pipefail
pkgs=(cmake ninja-build g++ make libboost-graph-dev libboost-program-options-dev libyaml-cpp-dev
      catch2 libfmt-dev nlohmann-json3-dev libopenmpi-dev openmpi-bin python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
