# Sourced by tools/device-session.sh and tools/device-profile.sh on the device machine: where the
# image's pip NVIDIA wheels keep the CUDA libraries the pack leaves out (libcudart, libcublasLt,
# libnccl; tools/device-pack.sh).
nvidia_lib_dirs() {  # every site-packages/nvidia/*/lib(64) holding a shared library, one a line
  local py
  for py in python3 /opt/torch/.venv/bin/python3 /usr/bin/python3; do
    command -v "$py" > /dev/null 2>&1 || continue
    timeout 30 "$py" - << 'EOF' 2> /dev/null
import glob, os, site, sys
roots = set()
try:
    import nvidia
    roots.update(os.path.realpath(p) for p in nvidia.__path__)
except Exception:
    pass
sp = list(getattr(site, "getsitepackages", lambda: [])()) + [site.getusersitepackages()] + sys.path
for d in sp:
    if d and os.path.isdir(os.path.join(d, "nvidia")):
        roots.add(os.path.realpath(os.path.join(d, "nvidia")))
for r in sorted(roots):
    for d in sorted(glob.glob(os.path.join(r, "*", "lib")) + glob.glob(os.path.join(r, "*", "lib64"))):
        if glob.glob(os.path.join(d, "*.so*")):
            print(d)
EOF
  done | awk '!seen[$0]++'
}
