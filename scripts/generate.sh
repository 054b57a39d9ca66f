#!/usr/bin/env bash
# Regenerates gen/ from proto/. The proto folder path equals the Python import
# path (reverb_contracts/v1), so the generated imports need no rewriting.
# google/api's .proto files come from the installed googleapis-common-protos
# (scripts/protodeps.sh copies them into the git-ignored .protodeps/). The
# descriptor set keeps the protos' comments (source info) for the gateway's
# OpenAPI document.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/protodeps.sh
out=gen/src
rm -f "$out"/reverb_contracts/v1/*_pb2*.py* "$out"/reverb_contracts/v1/*.binpb
python -m grpc_tools.protoc -I proto -I .protodeps \
  --python_out="$out" --mypy_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  --include_source_info --descriptor_set_out="$out/reverb_contracts/v1/contracts.binpb" \
  proto/reverb_contracts/v1/*.proto
touch "$out/reverb_contracts/py.typed"
