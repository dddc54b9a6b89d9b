#!/usr/bin/env bash
# MQTT events end to end: sensor events (about 200-byte JSON) published to a
# local mosquitto, delivered by a wedge MQTT trigger to a function (the C
# event guest, which answers with the event it got), its answers published
# to a result topic and read back. mqtt-load (bench/harness) publishes and
# reads; each payload carries its send time, so latency is publish to reply.
#
# Runs: the most events/s (published as fast as the broker takes them), a
# fixed 5,000 events/s for the seed's P95 target, and the seed's image
# pipeline (320x240 PPM in, grayscale 80x60 thumbnail out) at 200 images/s.
# Broker, wedge and load generator share the machine's cores.
#
# Needs: a release build (cargo build --release -p wedge-cli -p wedge-bench),
# Debian `mosquitto`. Usage: bench/mqtt.sh [EVENTS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-50000}
rate=${2:-5000}
wedge=${WEDGE_BIN:-$PWD/target/release/wedge}
load=$PWD/target/release/mqtt-load
port=18883
work=$(mktemp -d)
export WEDGE_CACHE_DIR=$work/cache XDG_RUNTIME_DIR=$work
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

cat > "$work/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
max_queued_messages 1000000
user $(id -un)
EOF
cat > "$work/wedge.toml" <<EOF
[[function]]
name = "event"
source = "$PWD/guests/c/wagi/event.wasm"
max_concurrency = 16
queue = 256

[[function]]
name = "thumbnail"
source = "$PWD/guests/c/wagi/thumbnail.wasm"
max_concurrency = 16
queue = 256

[[trigger.mqtt]]
broker = "mqtt://127.0.0.1:$port"
client_id = "bench-events"
topics = ["sensors/+/reading"]
function = "event"
max_in_flight = 64
reply_topic = "results/event"
dead_letter_topic = "dlq/event"

[[trigger.mqtt]]
broker = "mqtt://127.0.0.1:$port"
client_id = "bench-images"
topics = ["sensors/+/image"]
function = "thumbnail"
max_in_flight = 16
max_message_size = "1MiB"
reply_topic = "results/thumbnail"
dead_letter_topic = "dlq/thumbnail"
EOF
start() { # a fresh broker and wedge, both triggers subscribed
  rm -rf "$work/cache"
  /usr/sbin/mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 100); do
    grep -q running "$work/mosquitto.log" 2>/dev/null && break
    sleep 0.05
  done
  "$wedge" serve -f "$work/wedge.toml" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --log-level warn > "$work/wedge.out" 2> "$work/wedge.log" &
  wedge_pid=$!
  for _ in $(seq 1 200); do
    grep -q "^listening" "$work/wedge.out" 2>/dev/null && break
    sleep 0.05
  done
  admin=$(sed -n 's/^admin on http:\/\///p' "$work/wedge.out")
  for _ in $(seq 1 200); do
    [ "$(curl -s "http://$admin/metrics" | grep -c '^wedge_messaging_connected.* 1$')" = 2 ] && break
    sleep 0.05
  done
  sleep 0.5
}

stop() {
  kill "$wedge_pid" "$broker_pid" 2>/dev/null || true
  wait "$wedge_pid" "$broker_pid" 2>/dev/null || true
}

cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
measure() { # label, then mqtt-load arguments: on a fresh broker and wedge
  local label=$1; shift
  start
  local before; before=$(cpu "$wedge_pid")
  local out; out=$("$load" --port "$port" "$@")
  local after; after=$(cpu "$wedge_pid")
  local rss; rss=$(awk '/VmHWM/ { print $2 }' "/proc/$wedge_pid/status")
  local dead; dead=$(curl -s "http://$admin/metrics" | awk '/^wedge_messaging_dead_letters_total/ { n += $2 } END { print n + 0 }')
  stop
  echo "$label: $out; wedge CPU $(awk -v t=$((after - before)) -v k="$tick" 'BEGIN { printf "%.2f", t / k }')s, peak RSS $((rss / 1024)) MiB, dead letters $dead"
}

echo "mosquitto $(/usr/sbin/mosquitto -h 2>/dev/null | sed -n 's/^mosquitto version //p' | head -1), $(nproc) cores, $(date -u +%F)"
measure "events, as fast as possible" --count "$events" --replies 'results/event'
measure "events at $rate/s" --count $((rate * 10)) --rate "$rate" --replies 'results/event'
measure "images 320x240 at 200/s" --count 2000 --rate 200 --image 320 240 \
  --topic sensors/7/image --replies 'results/thumbnail'
measure "images 320x240, as fast as possible" --count 5000 --image 320 240 \
  --topic sensors/7/image --replies 'results/thumbnail'
