#!/usr/bin/env bash
# The GPU checks, in one go (for a lent CUDA machine): the fp16 poser against the CPU, frames per second,
# and the server with --talkinghead-gpu streaming. Writes logs to ${OUT:-/tmp/gpu-check}.
set -u
out=${OUT:-/tmp/gpu-check}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 bench/bench_gpu.py --frames 300 2>&1 | tee "$out/bench_gpu.txt"
python3 server.py --enable-modules=talkinghead --talkinghead-gpu --port 5190 > "$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 60); do curl -sf localhost:5190/api/modules >/dev/null && break; sleep 1; done
sleep 8
curl -s localhost:5190/api/talkinghead/stats | tee "$out/stats.json"; echo
timeout 4 curl -s localhost:5190/api/talkinghead/result_feed -o "$out/feed.bin"
echo "stream parts in 4 s: $(grep -c -a -- '--frame' "$out/feed.bin")"
curl -s -X POST -H 'Content-Type: application/json' -d '{"emotion_name":"joy"}' localhost:5190/api/talkinghead/set_emotion; echo
kill $pid; wait $pid 2>/dev/null
tail -5 "$out/server.log"
rm -f "$out/feed.bin"
timeout 400 python3 bench/bench_gpu.py --frames 300 --compile 2>&1 | tail -9 | tee "$out/bench_gpu_compile.txt"
