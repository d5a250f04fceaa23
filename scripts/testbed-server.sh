#!/usr/bin/env bash
# Starts the test bed's BoxLite/BoxRun server in the foreground (Ctrl-C stops it), after setting
# up its venv. Arguments go to the server, e.g.
#   scripts/testbed-server.sh --port 8100 --dialect current --auth token --token secret
#   scripts/testbed-server.sh --port 9090 --dialect boxrun --auth none
#   scripts/testbed-server.sh --port 8080 --dialect sse-ref --auth client-credentials --client-id c --client-secret s
# It prints its ready line (with the URL) and the interpreter that has the SDK simulator, which
# local mode (`pythonPath`) or an official client can use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$("$ROOT/python/testbed/setup.sh" | tail -n 1)"
echo "SDK simulator interpreter: $python"
cd "$ROOT/python/testbed"
exec "$python" -m boxlite_testbed.server --host 127.0.0.1 "$@"
