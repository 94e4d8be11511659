#!/usr/bin/env python3
"""A device session's files, kept as a measurement folder with its provenance (docs/executor.md,
"A device session: what to run", step 3).

    python3 tools/device_ingest.py FILES_AT [--suffix b] [--root exec/measurements]

FILES_AT is the folder the device tool copied $OUT to (tools/device-session.sh and
tools/device-profile.sh write there: measurement files, session.log, ncu-*.txt, logs.tar.gz).
Writes ROOT/<gpu>-<date><suffix>/, the catalog GPU id and the UTC date of the files' `run`
blocks (e.g. exec/measurements/h200-sxm-2026-12-03), holding:

  - every measurement file (*.json) of FILES_AT and of its logs.tar.gz (the focus session writes
    its variants' and graph benches' files only into the archive: the tool returns at most 8 files);
  - ncu-*.txt and session.log of FILES_AT;
  - from the archive, the provenance: phases.txt, pack-manifest.txt, version.txt,
    nvidia-smi-before.txt, nvidia-smi-after.txt, kernel-resources.txt, calibrate-steps.log (the
    steps' measured power against the committed power fit), and every [cuda] test log
    (cuda-tests.log, the variants' fp4-test-*.log, test-*.log, attention-test-*.log): what ran,
    on what, and that each variant's kernel was right before it was timed;
  - targets.txt: tools/exec_targets.py's output on the folder (the issue's speed targets and
    every variant's same-run ratio), or why it failed;
  - README.md: device, driver, CUDA, clocks and power limit, date and commit from the run blocks
    (a field that differs between files is listed with each value), the pack's first line, the
    [cuda] tests' summary line, the phase table, and each measurement file with its record count
    and the command that wrote it; the `step power` lines of calibrate-steps.log. Its first paragraph is for the engineer to write: what the
    session was for and what it found.

The folder is written under a temporary name and renamed into place at the end, so a failure
leaves nothing half-written; an existing folder is never replaced (give --suffix). The archive's
members are read by name only (no paths, links or devices are extracted). Exit 0 when written, 2
on a bad input (no measurement file, files of two GPUs or two dates, the folder exists).
Standard library only.
"""
import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

PROVENANCE = ["phases.txt", "pack-manifest.txt", "version.txt", "nvidia-smi-before.txt", "nvidia-smi-after.txt",
              "kernel-resources.txt", "calibrate-steps.log"]
TEST_LOG = re.compile(r"^(cuda-tests|fp4-test-.+|test-.+|attention-test-.+)\.log$")


class InputError(Exception):
    pass


def archive_members(path):
    """{name: bytes} of the regular files of a .tar.gz, by base name ('./x.json' -> 'x.json');
    members in subfolders (the calibrate phase's calibrated/) are skipped."""
    out = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            name = m.name[2:] if m.name.startswith("./") else m.name
            if not m.isfile() or "/" in name or name in ("", ".", ".."):
                continue
            out[name] = tar.extractfile(m).read()
    return out


def wanted(name):
    return name.endswith(".json") or name in PROVENANCE or bool(TEST_LOG.match(name))


def gather(files_at):
    """{name: bytes} of what the folder keeps: the archive's first, FILES_AT's own over them
    (FILES_AT's copy of a measurement file is the same file, copied as soon as it was written)."""
    files = {}
    archive = files_at / "logs.tar.gz"
    if archive.is_file():
        for name, data in archive_members(archive).items():
            if wanted(name):
                files[name] = data
    for p in sorted(files_at.iterdir()):
        if p.is_file() and not p.is_symlink() and (p.suffix == ".json" or p.name == "session.log" or
                                                  (p.name.startswith("ncu-") and p.suffix == ".txt") or wanted(p.name)):
            files[p.name] = p.read_bytes()
    return files


def run_blocks(files):
    """{file name: its `run` block} of the measurement files (schema racksim-measurements/1)."""
    runs = {}
    for name, data in sorted(files.items()):
        if not name.endswith(".json"):
            continue
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise InputError(f"{name}: not JSON ({e})")
        if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("racksim-measurements/") and isinstance(doc.get("run"), dict):
            runs[name] = doc["run"]
    return runs


def show(v):
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def field(runs, key, unit=""):
    """A run field as text: its one value, or each distinct value with the files that have it
    (most files first); "not recorded" when no file has it."""
    values = {}
    for name, run in runs.items():
        if key in run:
            values.setdefault(show(run[key]), []).append(name)
    if not values:
        return "not recorded"
    unit = f" {unit}" if unit else ""
    if len(values) == 1:
        return next(iter(values)) + unit
    ordered = sorted(values.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return "; ".join(f"{v}{unit} ({', '.join(names)})" for v, names in ordered)


def most_common(runs, key):
    values = [show(r[key]) for r in runs.values() if key in r]
    return max(sorted(set(values)), key=values.count) if values else "unknown"


def tests_summary(files):
    log = files.get("cuda-tests.log")
    if log is None:
        return "no cuda-tests.log"
    lines = [ln.strip() for ln in log.decode(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("All tests passed", "test cases:", "SKIP:", "No tests ran")):
            return ln
    return lines[-1] if lines else "cuda-tests.log is empty"


def readme(folder_name, folder_path, files, runs, targets_ok, files_at):
    device, gpu = most_common(runs, "device"), most_common(runs, "gpu")
    dates = sorted({str(r.get("date", "")) for r in runs.values()} - {""})
    pack = files.get("pack-manifest.txt", b"").decode(errors="replace").splitlines()
    phases = files.get("phases.txt", b"").decode(errors="replace").rstrip()
    out = [f"# {device} ({gpu}), {folder_name}: a device session", "",
           "<!-- What the session was for and what it found: written by the engineer. The rest is",
           f"     tools/device_ingest.py's, from the device tool's files ({files_at.name}/). -->", "",
           f"Device: {field(runs, 'device')}; driver {field(runs, 'driver')}, CUDA {field(runs, 'cuda')}, NCCL {field(runs, 'nccl')};"
           f" SM clock {field(runs, 'sm_clock_mhz', 'MHz')}, memory clock {field(runs, 'memory_clock_mhz', 'MHz')},"
           f" power limit {field(runs, 'power_limit_w', 'W')}, temperature {field(runs, 'temperature_c', 'C')}"
           " (each file's `run` block, read right after its last timed call; the session leaves clocks and limits as found).",
           f"Run: {dates[0]} to {dates[-1]} (UTC); commit {field(runs, 'commit')}" + (f"; pack: {pack[0]}" if pack else "") + ".",
           f"`[cuda]` tests: {tests_summary(files)} (cuda-tests.log).", ""]
    out += ["Speed targets and the variants' same-run ratios: `python3 tools/exec_targets.py "
            f"{folder_path}`" + (" (targets.txt: its output at ingest)." if targets_ok
                                                  else " (targets.txt: why it failed at ingest)."), ""]
    if phases:
        out += ["Phases (phases.txt):", "```", phases, "```", ""]
    steps = [ln for ln in files.get("calibrate-steps.log", b"").decode(errors="replace").splitlines() if ln.startswith("step power ")]
    if steps:
        out += ["Each step's measured power against the power fit (`racksim calibrate --steps`, calibrate-steps.log;"
                " docs/calibration.md, \"Step power\"):", "```", *steps, "```", ""]
    out += ["| file | records | written by |", "| --- | --- | --- |"]
    for name in sorted(runs):
        doc = json.loads(files[name])
        source = str(runs[name].get("source", "")).replace("|", "\\|")
        out.append(f"| {name} | {len(doc.get('records', []))} | `{source}` |")
    others = sorted(n for n in files if n not in runs)
    if others:
        out += ["", "Also here: " + ", ".join(others) + "."]
    return "\n".join(out) + "\n"


def ingest(files_at, root, suffix):
    if not files_at.is_dir():
        raise InputError(f"{files_at}: not a folder")
    files = gather(files_at)
    runs = run_blocks(files)
    if not runs:
        raise InputError(f"{files_at}: no measurement file (a .json with schema racksim-measurements/1 and a run block), here or in logs.tar.gz")
    gpus = {str(r.get("gpu", "")) for r in runs.values()}
    days = {str(r.get("date", ""))[:10] for r in runs.values()}
    if len(gpus) != 1 or "" in gpus:
        raise InputError(f"{files_at}: the measurement files name {len(gpus)} GPU ids ({', '.join(sorted(gpus))}): one session is one GPU")
    if len(days) != 1 or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", next(iter(days))):
        raise InputError(f"{files_at}: the measurement files' run dates are {', '.join(sorted(days))}: one UTC day expected; put each day's files in a folder of their own and ingest each")
    if suffix and not re.fullmatch(r"[A-Za-z0-9._-]+", suffix):
        raise InputError(f"--suffix '{suffix}': letters, digits, '.', '_' and '-' only")
    name = f"{next(iter(gpus))}-{next(iter(days))}{suffix}"
    dest = root / name
    if dest.exists():
        raise InputError(f"{dest}: exists; give --suffix (e.g. b) for a second session of that day")
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
        script = pathlib.Path(__file__).resolve().parent / "exec_targets.py"
        r = subprocess.run([sys.executable, str(script), str(tmp)], capture_output=True, text=True)
        targets_ok = r.returncode == 0
        (tmp / "targets.txt").write_text(r.stdout + (r.stderr if r.stderr else "") if targets_ok else
                                         f"tools/exec_targets.py exited {r.returncode}:\n{r.stderr}{r.stdout}")
        (tmp / "README.md").write_text(readme(name, dest.as_posix(), files, runs, targets_ok, files_at))
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest, len(files), targets_ok


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files_at", type=pathlib.Path, help="the folder the device tool copied $OUT to")
    ap.add_argument("--root", type=pathlib.Path, default=pathlib.Path("exec/measurements"), help="where the folder goes")
    ap.add_argument("--suffix", default="", help="after the date: a second session of the day (b, c, ...)")
    a = ap.parse_args(argv)
    try:
        dest, n, ok = ingest(a.files_at, a.root, a.suffix)
    except (InputError, tarfile.TarError, OSError) as e:
        print(f"error: device_ingest: {e}", file=sys.stderr)
        return 2
    print(f"{dest}: {n} files, README.md, targets.txt" + ("" if ok else " (tools/exec_targets.py failed: see targets.txt)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
