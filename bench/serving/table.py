#!/usr/bin/env python3
"""Markdown tables from bench/serving/run.sh's JSON lines: latency per batch, throughput, RSS."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lat = [r for r in rows if r.get("mode") == "latency"]
thr = [r for r in rows if r.get("mode") == "throughput"]
rss = [r for r in rows if "rss_mib_after_load" in r]
for r in rows:
    if "cpu" in r:
        print(f"date {r['date']}, CPU {r['cpu']} ({r['cores']} cores, {r.get('threads_per_call', r['cores'])} thread(s) per call), load average before {r['loadavg_before']}")
    if "loadavg_after" in r:
        print(f"load average after {r['loadavg_after']}")
print("\n| model | implementation | batch | p50 µs | p99 µs | rows/s |\n|---|---|---:|---:|---:|---:|")
for r in sorted(lat, key=lambda r: (r["model"], r["batch"], r["impl"])):
    print(f"| {r['model']} | {r['impl']} | {r['batch']} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['rows_per_s']:,} |")
print("\n| model | implementation | batch | callers | rows/s |\n|---|---|---:|---:|---:|")
for r in sorted(thr, key=lambda r: (r["model"], r["callers"], r["impl"])):
    print(f"| {r['model']} | {r['impl']} | {r['batch']} | {r['callers']} | {r['rows_per_s']:,} |")
if rss:
    print("\n| model | params (MiB f32) | RSS before load | after load | after 10k calls (batch 16) | after 20 more (batch 4096) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rss:
        print(f"| {r['model']} | {r['param_mib']} | {r['rss_mib_before_load']} | {r['rss_mib_after_load']} | "
              f"{r['rss_mib_after_10k_calls_batch16']} | {r['rss_mib_after_20_more_calls_batch4096']} |")
