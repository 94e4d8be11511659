#!/usr/bin/env bash
# Rewrites tests/golden/*.txt from the current build, and the validation table in
# docs/validation.md (test cli.validate_doc_table): review the diff before committing.
#   tools/update-golden.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
RACKSIM_UPDATE_GOLDEN=1 cmake "$build" >/dev/null
(cd "$build" && ctest -R '^cli\.' --output-on-failure -j2 >/dev/null)
RACKSIM_UPDATE_GOLDEN= cmake "$build" >/dev/null
git status --short tests/golden docs/validation.md
