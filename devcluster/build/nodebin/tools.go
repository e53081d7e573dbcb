//go:build tools

// Package nodebin pins the Kubernetes node and control-plane commands the test
// cluster runs next to tests/apiserver: `go build` of each command package from
// this module (tests/cluster/build.sh) uses the versions in go.mod/go.sum.
package nodebin

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
