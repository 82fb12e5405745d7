#!/usr/bin/env bash
# On a lent CUDA machine: the server as users start it with --talkinghead-gpu (auto: torch.compile + CUDA
# graphs), its stats and stream, and the exact /render endpoint. Logs to ${OUT:-/tmp/gpu-check}.
set -u
out=${OUT:-/tmp/gpu-check}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 server.py --enable-modules=talkinghead --talkinghead-gpu --port 5191 > "$out/server_compile.log" 2>&1 &
pid=$!
for _ in $(seq 240); do curl -sf localhost:5191/api/modules >/dev/null && break; sleep 1; done
sleep 5
curl -s localhost:5191/api/talkinghead/stats | tee "$out/stats_compile.json"; echo
curl -s -X POST -H 'Content-Type: application/json' -d '{"target_fps": 60}' localhost:5191/api/talkinghead/load_animator_settings; echo
sleep 3
timeout 4 curl -s localhost:5191/api/talkinghead/result_feed -o "$out/feed.bin"
echo "stream parts in 4 s at target_fps 60: $(grep -c -a -- '--frame' "$out/feed.bin")"
curl -s localhost:5191/api/talkinghead/stats; echo
curl -s -X POST -H 'Content-Type: application/json' -d '{"emotion":"joy"}' localhost:5191/api/talkinghead/render -o "$out/joy.png" -w "render: %{http_code} %{size_download} bytes %{time_total} s\n"
kill $pid; wait $pid 2>/dev/null
grep -E "compil|ready|Error|error" "$out/server_compile.log" | tail -6
rm -f "$out/feed.bin"
