#!/bin/sh
# Copy the one source of the CRD (crds/ at the repository root) into the places that ship it:
# the Helm chart's crds/ and the kustomize base. tests/deploy/test_crd_copies.py fails until they are identical.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
crd=ecsreinstalls.ecs.reinstall.dev.yaml
for target in deploy/helm/ecs-reinstall-operator/crds deploy/manifests/crds; do
    mkdir -p "$root/$target"
    cp "$root/crds/$crd" "$root/$target/$crd"
    echo "synced $target/$crd"
done
