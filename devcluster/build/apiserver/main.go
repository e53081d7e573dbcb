// Command tfmodel-apiserver runs an embedded etcd and a real kube-apiserver in
// one process, for the operator's envtest-style tests (no kubelet, scheduler or
// controller-manager). It generates its own CA, serving cert, service-account
// key pair and an admin token, and writes an admin kubeconfig to the data dir.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "tfmodel-apiserver: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	dataDir := flag.String("data-dir", "", "directory for etcd data, certificates and the admin kubeconfig (required)")
	securePort := flag.Int("secure-port", 0, "kube-apiserver HTTPS port on 127.0.0.1 (0 = pick a free one)")
	etcdClientPort := flag.Int("etcd-client-port", 0, "etcd client port on 127.0.0.1 (0 = pick a free one)")
	etcdPeerPort := flag.Int("etcd-peer-port", 0, "etcd peer port on 127.0.0.1 (0 = pick a free one)")
	printVersion := flag.Bool("version", false, "print the Kubernetes version and exit")
	saAdmission := flag.Bool("service-account-admission", false,
		"keep the ServiceAccount admission plugin (for a cluster whose controller-manager creates the default ServiceAccounts)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s --data-dir DIR [flags] [-- extra kube-apiserver flags]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *printVersion {
		fmt.Println(version.Get().GitVersion)
		return nil
	}
	if *dataDir == "" {
		flag.Usage()
		return fmt.Errorf("--data-dir is required")
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	for _, p := range []*int{securePort, etcdClientPort, etcdPeerPort} {
		if *p == 0 {
			if *p, err = freePort(); err != nil {
				return err
			}
		}
	}

	token, err := writeCredentials(pki)
	if err != nil {
		return fmt.Errorf("generating credentials: %w", err)
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", *securePort)
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, filepath.Join(pki, "ca.crt"), token); err != nil {
		return err
	}

	etcd, err := startEtcd(filepath.Join(dir, "etcd"), *etcdClientPort, *etcdPeerPort)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()

	args := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", *etcdClientPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", *securePort),
		"--cert-dir=" + pki,
		"--tls-cert-file=" + filepath.Join(pki, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "apiserver.key"),
		"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--token-auth-file=" + filepath.Join(pki, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		// The endpoint reconciler rejects loopback addresses; nothing needs it here.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	if !*saAdmission {
		// No controller-manager runs: the ServiceAccount admission plugin would
		// reject every pod whose namespace has no "default" ServiceAccount yet.
		args = append(args, "--disable-admission-plugins=ServiceAccount")
	}
	args = append(args, flag.Args()...)

	go reportReady(server, token, filepath.Join(pki, "ca.crt"), kubeconfig)

	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(args)
	return cmd.Execute()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(dir string, clientPort, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "tfmodel"
	cfg.Dir = dir
	cfg.LogLevel = "error"
	// Throwaway test data: skipping fsync keeps writes fast on slow CI disks.
	cfg.UnsafeNoFsync = true
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd not ready after 60s")
	}
}

// reportReady prints one line once /readyz answers, so a caller can wait on stdout.
func reportReady(server, token, caFile, kubeconfig string) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Printf("TFMODEL-APISERVER READY %s %s %s\n", version.Get().GitVersion, server, kubeconfig)
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writeCredentials creates (once) the CA, serving cert, service-account keys and
// the admin token file; it returns the admin token.
func writeCredentials(pki string) (string, error) {
	tokenFile := filepath.Join(pki, "tokens.csv")
	if b, err := os.ReadFile(tokenFile); err == nil {
		return strings.SplitN(string(b), ",", 2)[0], nil
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tfmodel-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	caCert, _ := x509.ParseCertificate(caDER)

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return "", err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return "", err
	}
	caKeyDER, _ := x509.MarshalECPrivateKey(caKey)
	srvKeyDER, _ := x509.MarshalECPrivateKey(srvKey)

	tokenBytes := make([]byte, 24)
	if _, err := rand.Read(tokenBytes); err != nil {
		return "", err
	}
	token := hex.EncodeToString(tokenBytes)

	files := []struct {
		name string
		data []byte
	}{
		{"ca.crt", pemBlock("CERTIFICATE", caDER)},
		{"ca.key", pemBlock("EC PRIVATE KEY", caKeyDER)},
		{"apiserver.crt", pemBlock("CERTIFICATE", srvDER)},
		{"apiserver.key", pemBlock("EC PRIVATE KEY", srvKeyDER)},
		{"sa.key", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))},
		{"sa.pub", pemBlock("PUBLIC KEY", saPub)},
		// Written last: its presence marks the credentials as complete.
		{"tokens.csv", []byte(token + ",tfmodel-admin,tfmodel-admin,\"system:masters\"\n")},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(pki, f.name), f.data, 0o600); err != nil {
			return "", err
		}
	}
	return token, nil
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func writeKubeconfig(path, server, caFile, token string) error {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	// PEM is ASCII; JSON is valid YAML, so no YAML library is needed.
	cfg := fmt.Sprintf(`{
  "apiVersion": "v1",
  "kind": "Config",
  "clusters": [{"name": "tfmodel-test", "cluster": {"server": %q, "certificate-authority-data": %q}}],
  "users": [{"name": "tfmodel-admin", "user": {"token": %q}}],
  "contexts": [{"name": "tfmodel-test", "context": {"cluster": "tfmodel-test", "user": "tfmodel-admin"}}],
  "current-context": "tfmodel-test"
}
`, server, base64.StdEncoding.EncodeToString(caPEM), token)
	return os.WriteFile(path, []byte(cfg), 0o600)
}
