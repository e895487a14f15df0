#!/bin/sh
# Regenerate argocd-cm.yaml from the health checks (their one source): health.lua (EcsReinstall) and
# health-ecsreinstallset.lua (EcsReinstallSet). tests/deploy/test_argocd_health.py fails until they agree.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
embed() {
    sed -e 's/^/    /' -e 's/^    $//' "$1"
}
{
    cat <<'HEADER'
# Merge into Argo CD's argocd-cm ConfigMap (e.g. with `kubectl patch configmap argocd-cm -n argocd --patch-file`
# or your Argo CD Helm values' configs.cm): the health checks of EcsReinstall and EcsReinstallSet resources.
# Generated from deploy/argocd/health.lua and deploy/argocd/health-ecsreinstallset.lua by
# deploy/argocd/sync-argocd-cm.sh: edit those, then run it.
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
    embed "$here/health.lua"
    echo "  resource.customizations.health.ecs.reinstall.dev_EcsReinstallSet: |"
    embed "$here/health-ecsreinstallset.lua"
} > "$here/argocd-cm.yaml"
echo "wrote $here/argocd-cm.yaml"
