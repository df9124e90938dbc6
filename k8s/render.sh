#!/bin/sh
# Renders an overlay: k8s/render.sh local|production [> out.yaml | kubectl apply -f -]
#
# Why not `kubectl apply -k`: the ConfigMaps are generated from the repository's own config
# files (nginx/, prometheus/, grafana/, ...), outside k8s/, so that every deployment mode reads
# the very same files. kustomize refuses files outside the kustomization's folder unless told
# --load-restrictor LoadRestrictionsNone, a flag `kubectl kustomize` and `kustomize build`
# take but `kubectl apply -k` does not.
set -eu
overlay=${1:?usage: k8s/render.sh local|production}
here=$(cd "$(dirname "$0")" && pwd)
dir="$here/overlays/$overlay"
[ -d "$dir" ] || { echo "no overlay $overlay under $here/overlays" >&2; exit 2; }
if [ ! -f "$dir/secrets.env" ]; then
    echo "missing $dir/secrets.env: copy secrets.env.example beside it and fill it in" >&2
    exit 2
fi
if command -v kustomize >/dev/null 2>&1 && [ -z "${KUBECTL:-}" ]; then
    exec kustomize build --load-restrictor LoadRestrictionsNone "$dir"
fi
exec "${KUBECTL:-kubectl}" kustomize --load-restrictor LoadRestrictionsNone "$dir"
