#!/usr/bin/env bash
# End-to-end test of Hybrid on a real cluster: kind (one control plane, two workers) on Docker.
#
#   deploy/e2e/run.sh [--image hybrid:e2e] [--name hybrid-e2e] [--keep]
#
# Builds the image from deploy/Dockerfile (unless --image names one already built), loads it into kind,
# applies deploy/base with that image and svc_election=true, creates the cluster key, then runs the seed
# document's examples and checks them from a container on the kind network, as a LAN client would:
#   1. shared IP: http1 (port 80) and http2 (port 81) on one address, one holder, curl answers on both;
#   2. Local: nginx-service is held by the node running its pod, and follows the pod when it moves;
#   3. failover: `docker kill` of the holder; the other worker answers ARP and curl works again;
#   4. DHCP: a Service on 0.0.0.0 gets an address from a dnsmasq container on the kind network.
# ARP replies are checked against each node's MAC: exactly one node answers, and it is the holder
# written in kube-vip.io/vipHost (for the DHCP Service: exactly its macvlan's MAC, kube-vip.io/hwaddr). Needs docker, kind, kubectl and internet access for the base images.
# Everything it creates (cluster, containers, temporary files) is removed on exit, also on failure or
# Ctrl-C, unless --keep is given. Prints PASS/FAIL per check; exits 1 when any check failed.
set -euo pipefail

root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
name=hybrid-e2e
image=""
keep=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --keep) keep=true; shift ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "e2e: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "e2e: '$tool' is required" >&2; exit 2; }
done

work="$(mktemp -d -t hybrid-e2e-XXXXXX)"
client="$name-client"
dhcp="$name-dnsmasq"
cleanup() {
  local status=$?
  if [[ $keep == false ]]; then
    docker rm -f "$client" "$dhcp" >/dev/null 2>&1 || true
    kind delete cluster --name "$name" >/dev/null 2>&1 || true
  else
    echo "e2e: kept cluster '$name' and containers $client, $dhcp (KUBECONFIG=$work/kubeconfig)" >&2
  fi
  [[ $keep == true ]] || rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failures=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
step() { echo; echo "== $*"; }
# expect DESCRIPTION COMMAND...: PASS when COMMAND succeeds, FAIL otherwise.
expect() { local what="$1"; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

# wait_for SECONDS COMMAND...: runs COMMAND every second until it succeeds or the deadline passes.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || return 1
    sleep 1
  done
}

# ---------------------------------------------------------------------------------------------- cluster
step "kind cluster '$name' (1 control plane, 2 workers)"
cat >"$work/kind.yaml" <<'EOF'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
EOF
kind create cluster --name "$name" --config "$work/kind.yaml" --wait 180s
export KUBECONFIG="$work/kubeconfig"
kind get kubeconfig --name "$name" >"$KUBECONFIG"
mapfile -t nodes < <(kind get nodes --name "$name" | sort)

# Addresses near the top of the kind network's IPv4 subnet (Docker hands out container addresses from
# the bottom): VIPs and the DHCP pool stay clear of the nodes.
subnet="$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' | tr ' ' '\n' | grep -m1 '\.')"
ip_to_int() { local a b c d; IFS=. read -r a b c d <<<"$1"; echo $(((a << 24) | (b << 16) | (c << 8) | d)); }
int_to_ip() { echo "$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"; }
network="$(ip_to_int "${subnet%/*}")"
prefix="${subnet#*/}"
last=$((network + (1 << (32 - prefix)) - 2))
vip_shared="$(int_to_ip $((last - 10)))"
vip_local="$(int_to_ip $((last - 11)))"
dhcp_first="$(int_to_ip $((last - 60)))"
dhcp_last="$(int_to_ip $((last - 40)))"
netmask="$(int_to_ip $(((0xffffffff << (32 - prefix)) & 0xffffffff)))"
echo "kind network $subnet: shared VIP $vip_shared, Local VIP $vip_local, DHCP pool $dhcp_first-$dhcp_last"

# ------------------------------------------------------------------------------------------------ image
step "image"
if [[ -z $image ]]; then
  image=hybrid:e2e
  docker build -f "$root/deploy/Dockerfile" -t "$image" "$root"
fi
[[ $image == *:* ]] || { echo "e2e: --image needs a tag (name:tag)" >&2; exit 2; }
kind load docker-image "$image" --name "$name"

# ----------------------------------------------------------------------------------------------- deploy
step "deploy/base with $image and svc_election=true"
mkdir -p "$work/overlay"
cat >"$work/overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$work/overlay" "$root/deploy/base")
images:
  - name: ghcr.io/hybrid-lb/hybrid
    newName: ${image%:*}
    newTag: ${image##*:}
patches:
  - target: {kind: DaemonSet, name: hybrid}
    patch: |
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: svc_election, value: "true"}
EOF
kubectl apply -k "$work/overlay"
docker run --rm "$image" manifest secret | kubectl create -f -
if kubectl -n hybrid-system rollout status daemonset/hybrid --timeout=180s; then
  pass "the agents are ready on every worker"
else
  fail "the agents did not become ready"
  kubectl -n hybrid-system get pods -o wide || true
fi

# --------------------------------------------------------------------------------------------- checks
step "client container on the kind network"
docker run -d --name "$client" --network kind --cap-add NET_RAW debian:bookworm-slim sleep infinity >/dev/null
docker exec "$client" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends curl iputils-arping >/dev/null'

node_mac() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}' "$1" | tr '[:upper:]' '[:lower:]'; }
# The distinct MACs answering ARP for an address, lower case, one per line.
arp_macs() {
  docker exec "$client" arping -c 3 -w 4 -I eth0 "$1" 2>/dev/null |
    sed -n 's/.*\[\([0-9A-Fa-f:]*\)\].*/\1/p' | tr '[:upper:]' '[:lower:]' | sort -u
}
holder_of() { kubectl get service "$1" -o jsonpath='{.metadata.annotations.kube-vip\.io/vipHost}'; }
curl_ok() { docker exec "$client" curl -fsS --max-time 2 -o /dev/null "http://$1"; }
external_ip() { kubectl get service "$1" -o jsonpath='{.status.loadBalancer.ingress[0].ip}'; }
has_external_ip() { [[ $(external_ip "$1") == "$2" ]]; }
has_holder() { [[ -n $(holder_of "$1") ]]; }

# check_arp ADDRESS NODE: exactly one MAC answers, and it is NODE's.
check_arp() {
  local macs expected
  macs="$(arp_macs "$1")"
  expected="$(node_mac "$2")"
  if [[ $macs == "$expected" ]]; then pass "ARP for $1 answered by $2 only ($expected)"
  else fail "ARP for $1: expected only $2 ($expected), got: ${macs:-nothing}"; fi
}

step "1. shared IP: http1 and http2 on $vip_shared"
kubectl create deployment test-deploy --image=nginx --replicas=3
kubectl expose deployment test-deploy --port=80 --target-port=80 --type=LoadBalancer --name http1 --load-balancer-ip="$vip_shared"
kubectl expose deployment test-deploy --port=81 --target-port=80 --type=LoadBalancer --name http2 --load-balancer-ip="$vip_shared"
kubectl rollout status deployment/test-deploy --timeout=180s
if wait_for 60 has_external_ip http1 "$vip_shared" && wait_for 60 has_external_ip http2 "$vip_shared"; then
  pass "both Services show EXTERNAL-IP $vip_shared"
else
  fail "EXTERNAL-IP of http1/http2: $(external_ip http1) / $(external_ip http2)"
fi
holder="$(holder_of http1)"
if [[ -n $holder && $holder == "$(holder_of http2)" ]]; then pass "one holder for both: $holder"
else fail "holders differ: '$holder' vs '$(holder_of http2)'"; fi
if wait_for 30 curl_ok "$vip_shared:80" && wait_for 30 curl_ok "$vip_shared:81"; then pass "curl answers on $vip_shared:80 and :81"
else fail "curl to $vip_shared:80/:81"; fi
[[ -n $holder ]] && check_arp "$vip_shared" "$holder"

step "2. Local: the seed's nginx-service on $vip_local follows its pod"
kubectl create deployment nginx --image=nginx --replicas=1
kubectl apply -f - <<EOF
apiVersion: v1
kind: Service
metadata:
  name: nginx-service
  annotations:
    kube-vip.io/loadbalancerIPs: "$vip_local"
spec:
  selector:
    app: nginx
  ports:
    - port: 80
      targetPort: 80
  externalTrafficPolicy: Local
  type: LoadBalancer
EOF
kubectl rollout status deployment/nginx --timeout=180s
pod_node() { kubectl get pods -l app=nginx --field-selector=status.phase=Running -o jsonpath='{.items[0].spec.nodeName}'; }
held_by_pod_node() { local n; n="$(pod_node)"; [[ -n $n && $(holder_of nginx-service) == "$n" ]]; }
if wait_for 60 held_by_pod_node; then pass "nginx-service is held by $(pod_node), where its pod runs"
else fail "nginx-service holder '$(holder_of nginx-service)', pod on '$(pod_node)'"; fi
expect "curl answers on $vip_local" wait_for 30 curl_ok "$vip_local"
check_arp "$vip_local" "$(pod_node)"
first="$(pod_node)"
kubectl cordon "$first"
kubectl delete pod -l app=nginx --wait=false
moved() { local n; n="$(pod_node)"; [[ -n $n && $n != "$first" ]]; }
if wait_for 120 moved && wait_for 60 held_by_pod_node; then pass "after the pod moved to $(pod_node), the VIP followed"
else fail "after moving the pod: holder '$(holder_of nginx-service)', pod on '$(pod_node)'"; fi
check_arp "$vip_local" "$(pod_node)"
kubectl uncordon "$first"

step "3. failover: docker kill the holder of $vip_shared"
victim="$(holder_of http1)"
if [[ -z $victim ]]; then
  fail "no holder to kill"
else
  docker kill "$victim" >/dev/null
  started=$SECONDS
  taken_over() { local h; h="$(arp_macs "$vip_shared")"; [[ -n $h && $h != "$(node_mac "$victim")" && $(wc -l <<<"$h") -eq 1 ]]; }
  if wait_for 30 taken_over; then pass "another node answers ARP for $vip_shared $((SECONDS - started)) s after the kill"
  else fail "no single other node answers ARP for $vip_shared after the kill"; fi
  survivor=""
  for n in "${nodes[@]}"; do
    if [[ $n != "$victim" && $n != *control-plane* ]]; then survivor="$n"; fi
  done
  new_holder() { [[ $(holder_of http1) == "$survivor" ]]; }
  expect "vipHost names the surviving worker $survivor" wait_for 60 new_holder
  check_arp "$vip_shared" "$survivor"
  expect "curl answers on $vip_shared:80 after the failover" wait_for 120 curl_ok "$vip_shared:80"
fi

step "4. DHCP: a Service on 0.0.0.0 gets its address from dnsmasq ($dhcp_first-$dhcp_last)"
docker run -d --name "$dhcp" --network kind --cap-add NET_ADMIN --cap-add NET_RAW debian:bookworm-slim sleep infinity >/dev/null
docker exec "$dhcp" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends dnsmasq-base >/dev/null'
docker exec -d "$dhcp" dnsmasq --no-daemon --port=0 --log-dhcp --dhcp-authoritative \
  --dhcp-range="$dhcp_first,$dhcp_last,$netmask,1h"
kubectl expose deployment test-deploy --port=80 --type=LoadBalancer --name=nginx-dhcp --load-balancer-ip=0.0.0.0
in_pool() {
  local ip; ip="$(external_ip nginx-dhcp)"
  [[ -n $ip && $ip != 0.0.0.0 ]] || return 1
  local n; n="$(ip_to_int "$ip")"
  (( n >= $(ip_to_int "$dhcp_first") && n <= $(ip_to_int "$dhcp_last") ))
}
if wait_for 60 in_pool; then
  leased="$(external_ip nginx-dhcp)"
  pass "nginx-dhcp got $leased from the DHCP server"
  expect "curl answers on $leased" wait_for 30 curl_ok "$leased"
  # The leased address lives on the holder's macvlan and answers with the Service's MAC, the one leased to.
  service_mac="$(kubectl get service nginx-dhcp -o jsonpath='{.metadata.annotations.kube-vip\.io/hwaddr}' | tr '[:upper:]' '[:lower:]')"
  dhcp_macs="$(arp_macs "$leased")"
  if [[ -n $service_mac && $dhcp_macs == "$service_mac" ]]; then pass "ARP for $leased answered by the Service's macvlan only ($service_mac)"
  else fail "ARP for $leased: expected only the Service's MAC (${service_mac:-none recorded}), got: ${dhcp_macs:-nothing}"; fi
else
  fail "nginx-dhcp has no address from the pool (EXTERNAL-IP '$(external_ip nginx-dhcp)')"
fi

echo
if (( failures == 0 )); then echo "e2e: all checks passed"; else echo "e2e: $failures check(s) failed"; fi
(( failures == 0 ))
