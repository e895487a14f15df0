#!/bin/sh
# Copy the one source of the CRDs (every *.yaml of crds/ at the repository root: EcsReinstall and EcsReinstallSet)
# into the places that ship them: the Helm chart's crds/ and the kustomize base (which lists each in its
# kustomization.yaml). A CRD no longer in crds/ is removed from both. tests/deploy/test_crd_copies.py fails until
# the copies are identical.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
for target in deploy/helm/ecs-reinstall-operator/crds deploy/manifests/crds; do
    mkdir -p "$root/$target"
    for copy in "$root/$target"/*.yaml; do
        [ -e "$copy" ] || continue
        if [ ! -e "$root/crds/$(basename "$copy")" ]; then
            rm "$copy"
            echo "removed $target/$(basename "$copy") (not in crds/)"
        fi
    done
    for crd in "$root"/crds/*.yaml; do
        cp "$crd" "$root/$target/$(basename "$crd")"
        echo "synced $target/$(basename "$crd")"
    done
done
