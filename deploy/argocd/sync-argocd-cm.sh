#!/bin/sh
# Regenerate argocd-cm.yaml from health.lua (the one source of the health check).
# tests/deploy/test_argocd_health.py fails until the two agree.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
{
    cat <<'HEADER'
# Merge into Argo CD's argocd-cm ConfigMap (e.g. with `kubectl patch configmap argocd-cm -n argocd --patch-file`
# or your Argo CD Helm values' configs.cm): the health check of EcsReinstall resources.
# Generated from deploy/argocd/health.lua by deploy/argocd/sync-argocd-cm.sh: edit health.lua, then run it.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  resource.customizations.health.ecs.reinstall.dev_EcsReinstall: |
HEADER
    sed -e 's/^/    /' -e 's/^    $//' "$here/health.lua"
} > "$here/argocd-cm.yaml"
echo "wrote $here/argocd-cm.yaml"
