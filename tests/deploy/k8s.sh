#!/usr/bin/env bash
# tests/deploy/k8s.sh - the Kubernetes manifests (deploy/k8s) checked without a cluster: each
# overlay rendered by kubectl's kustomize, every object validated against the Kubernetes
# schemas (kubernetes-validate, strict: unknown fields are errors), and scanned by checkov's
# Kubernetes checks (a failed check fails; the few skipped ones carry their reason in a
# checkov.io/skip annotation). Run by tests/deploy/run.sh; also alone (make test-k8s).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${ECSNET_DEPLOY_CACHE:-/var/cache/ecsnet}
K8S_VERSION=${K8S_VERSION:-1.30.0}
fail() { echo "k8s check: FAILED: $*" >&2; exit 1; }
mkdir -p "$CACHE"
bin=$(bash "$root/tests/deploy/k8s-setup.sh" "$CACHE" | tail -1) ||
  { [ "${CI:-}" = true ] && fail "cannot install kubectl, kubernetes-validate or checkov"
    echo "k8s check: skipped: cannot install kubectl, kubernetes-validate or checkov"; exit 0; }
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
for o in cpu gpu; do
  kubectl kustomize "$root/deploy/k8s/overlays/$o" >"$w/$o.yaml" || fail "kustomize $o"
  n=$(grep -c '^kind:' "$w/$o.yaml")
  "$bin/kubernetes-validate" --quiet --strict --kubernetes-version "$K8S_VERSION" "$w/$o.yaml" \
    >"$w/$o.validate" 2>&1 || { cat "$w/$o.validate"; fail "kubernetes-validate $o"; }
  grep -qiE 'error|fail' "$w/$o.validate" && { cat "$w/$o.validate"; fail "kubernetes-validate $o"; }
  "$bin/checkov" --quiet --compact --skip-download --framework kubernetes -f "$w/$o.yaml" -o cli \
    >"$w/$o.checkov" 2>&1 || { cat "$w/$o.checkov"; fail "checkov $o"; }
  summary=$("$bin/checkov" --skip-download --framework kubernetes -f "$w/$o.yaml" -o json 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; s=d["summary"]; print("%d passed, %d failed, %d skipped" % (s["passed"], s["failed"], s["skipped"]))')
  echo "k8s $o: $n objects valid for Kubernetes $K8S_VERSION (kubernetes-validate --strict); checkov: $summary"
done
# the GPU overlay asks for a GPU per inference pod
grep -q 'nvidia.com/gpu: 1' "$w/gpu.yaml" || fail "the GPU overlay requests no nvidia.com/gpu"
