#!/usr/bin/env bash
# The CPU benchmark on this project's test data: Fashion-MNIST in ../shared/data beside the repo.
# The suite itself is `python -m tlcore.bench`; it only needs to be told where the data is.
# Usage: benchmarks/quick.sh [--cases 1,4] [--json now.json] [--compare benchmarks/quick-cpu.json]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export TLCORE_BENCH_DATA="${TLCORE_BENCH_DATA:-$here/../../shared/data}"
cd "$here/.."
exec python -m tlcore.bench --quick "$@"
