#!/usr/bin/env bash
# The GPU checks, in one go (for a lent CUDA machine): the fp16 poser against the CPU, frames per second,
# and the server with --talkinghead-gpu streaming. Writes logs to ${OUT:-/tmp/gpu-check}.
set -u
out=${OUT:-/tmp/gpu-check}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -m bench.bench_gpu --frames 300 2>&1 | tee "$out/bench_gpu.txt"
python3 server.py --enable-modules=talkinghead --talkinghead-gpu --port 5190 > "$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 60); do curl -sf localhost:5190/api/modules >/dev/null && break; sleep 1; done
sleep 8
curl -s localhost:5190/api/talkinghead/stats | tee "$out/stats.json"; echo
# Distinct frames, not parts: the stream re-sends the last frame about once a second when nothing new comes.
python3 - <<'PY' | tee "$out/stream.txt"
import hashlib, time, requests
from talkinghead.stream import PartReader
response = requests.get("http://localhost:5190/api/talkinghead/result_feed", stream=True, timeout=30)
reader, parts, distinct, before, start, arrivals = PartReader(response.iter_content(chunk_size=None)), 0, 0, None, time.monotonic(), []
while time.monotonic() - start < 4:
    got = reader.read(1)
    if not got:
        break
    h = hashlib.blake2b(got[0][1], digest_size=8).digest()
    parts += 1
    if h != before:
        distinct += 1
        arrivals.append(time.monotonic())
    before = h
response.close()
gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
print(f"stream in 4 s: {parts} parts, {distinct} distinct frames ({distinct / 4:.1f}/s), "
      f"max gap between distinct frames {1000 * max(gaps, default=float('nan')):.0f} ms")
PY
curl -s -X POST -H 'Content-Type: application/json' -d '{"emotion_name":"joy"}' localhost:5190/api/talkinghead/set_emotion; echo
kill $pid; wait $pid 2>/dev/null
tail -5 "$out/server.log"
rm -f "$out/feed.bin"
timeout 400 python3 -m bench.bench_gpu --frames 300 --compile 2>&1 | tail -9 | tee "$out/bench_gpu_compile.txt"
