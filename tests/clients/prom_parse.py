"""Parse a Prometheus text page from stdin with the reference Python parser
(prometheus_client), and print every sample as one JSON list:
[[name, {label: value}, value], ...]. A page the parser rejects exits non-zero.
Used by tests/ops.rs; CI installs prometheus-client (.ci/run)."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
        if family.type not in ("counter", "gauge", "histogram"):
            sys.exit(f"unexpected family type {family.type} for {family.name}")
json.dump(samples, sys.stdout)
