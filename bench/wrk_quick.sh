#!/bin/bash
# Quick side-by-side (issue 4 figures): wrk -t1 -c50 -d10s, server on core 0 (--cores 1), wrk on core 1, same run
# Usage: bash bench/wrk_quick.sh   (needs wrk; default link without RPS, so the kernel stack gets its
# receive path on wrk's core for free -- use `python -m bench` for the fair comparison)
set -u
run() { # stack subnet
  local extra=$1 sub=$2
  python -m framework serve apps.hello:app --cores 1 $extra --link-subnet 198.18.$sub.0/24 --log-level warning > ${TMPDIR:-/tmp}/fw-wrk-$sub.log 2>&1 &
  local pid=$!
  for i in $(seq 50); do grep -q serving ${TMPDIR:-/tmp}/fw-wrk-$sub.log && break; sleep 0.2; done
  local url=http://198.18.$sub.2:8080/
  curl -s -m 2 $url >/dev/null
  ka=$(taskset -c 1 wrk -t1 -c50 -d10s $url | awk '/Requests\/sec/{print $2}')
  cl=$(taskset -c 1 wrk -t1 -c50 -d10s -H "Connection: close" $url | awk '/Requests\/sec/{print $2}')
  echo "$extra keepalive=$ka close=$cl"
  kill -TERM $pid; wait $pid
}
for r in 1 2; do
run "--stack user" 61
run "--stack user --port-type tap" 62
run "--stack kernel" 63
done
