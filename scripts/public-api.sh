#!/usr/bin/env bash
# Writes the recorded public API anew: api/ferrocep-core.txt,
# api/ferrocep.txt and api/ferrocep-runtime.txt, the `pub` items of each crate with their signatures
# (crates/ferrocep/tests/public_api.rs makes them). `cargo test` fails while
# they differ from the code; run this when an API change is meant, and
# commit the files with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FERROCEP_BLESS_API=1 cargo test -p ferrocep --test public_api --quiet
git --no-pager diff --stat -- api/ || true
