#!/usr/bin/env bash
# Regenerates gen/ from proto/. The proto folder path equals the Python import
# path (reverb_contracts/v1), so the generated imports need no rewriting.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gen/src
rm -f "$out"/reverb_contracts/v1/*_pb2*.py*
python -m grpc_tools.protoc -I proto \
  --python_out="$out" --mypy_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  proto/reverb_contracts/v1/*.proto
touch "$out/reverb_contracts/py.typed"
