#!/usr/bin/env bash
# Fills the git-ignored .protodeps/ with the .proto files our protos import from
# PyPI's googleapis-common-protos (google/api/annotations.proto, http.proto,
# field_behavior.proto), as the installed package ships them, for protoc and buf.
set -euo pipefail
cd "$(dirname "$0")/.."
source=$(python -c 'import os, google.api.annotations_pb2 as m; print(os.path.dirname(m.__file__))')
rm -rf .protodeps
mkdir -p .protodeps/google/api
for name in annotations http field_behavior; do
  cp "$source/$name.proto" .protodeps/google/api/
done
