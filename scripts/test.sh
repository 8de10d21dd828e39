#!/usr/bin/env bash
# The one test command (README.md): installs the real tools the tests use, then runs every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/install-tools.sh
export PATH="$root/.tools/bin:$PATH"
# One clean build: incremental state would roughly double the target directory on a small CI disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --locked --all-targets
cargo test --workspace --locked --doc
if [ -x scripts/check-deploy.sh ]; then
  ./scripts/check-deploy.sh
fi
echo "test.sh: all tests passed"
