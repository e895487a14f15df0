#!/bin/sh
# Copy the one source of the alerts and the dashboard (this directory) into the Helm chart's files/, which ships
# them (.Files.Get reads only files inside the chart). tests/deploy/test_monitoring.py fails until they are identical.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
files="$here/../helm/ecs-reinstall-operator/files"
mkdir -p "$files"
for name in prometheus-rules.yaml grafana-dashboard.json; do
    cp "$here/$name" "$files/$name"
    echo "synced deploy/helm/ecs-reinstall-operator/files/$name"
done
