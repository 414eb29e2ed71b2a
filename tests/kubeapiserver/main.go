// Command kubeapiserver runs a real kube-apiserver with an embedded etcd on
// loopback, for the keycloak-sidecar tests.
//
// It keeps everything in one state directory: on the first start it makes a
// CA and a serving certificate for 127.0.0.1, the service-account signing
// key, the static tokens (an admin in system:masters, and one kubelet
// identity per emulated node), an audit policy, and an admin kubeconfig.
// Later starts with the same directory reuse them and the etcd data, so a
// restart of this process is a restart of the API server (and its etcd) with
// the cluster's state kept.
//
// Arguments after "--" are passed to kube-apiserver unchanged, after the
// defaults, so a test can override one (for example --watch-cache-sizes).
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const nodeCount = 3

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

type options struct {
	stateDir       string
	apiserverPort  int
	etcdClientPort int
	etcdPeerPort   int
}

func main() {
	var opts options
	flag.StringVar(&opts.stateDir, "state-dir", "", "directory for certificates, tokens, etcd data and logs (required)")
	flag.IntVar(&opts.apiserverPort, "port", 0, "kube-apiserver secure port on 127.0.0.1 (required)")
	flag.IntVar(&opts.etcdClientPort, "etcd-client-port", 0, "etcd client port on 127.0.0.1 (required)")
	flag.IntVar(&opts.etcdPeerPort, "etcd-peer-port", 0, "etcd peer port on 127.0.0.1 (required)")
	flag.Parse()
	if opts.stateDir == "" || opts.apiserverPort == 0 || opts.etcdClientPort == 0 || opts.etcdPeerPort == 0 {
		fmt.Fprintln(os.Stderr, "kubeapiserver: --state-dir, --port, --etcd-client-port and --etcd-peer-port are required")
		os.Exit(2)
	}
	os.Exit(run(opts, flag.Args()))
}

func run(opts options, extra []string) int {
	if err := prepareStateDir(opts); err != nil {
		fmt.Fprintln(os.Stderr, "kubeapiserver: preparing state:", err)
		return 1
	}
	etcd, err := startEtcd(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeapiserver: starting etcd:", err)
		return 1
	}
	defer etcd.Close()
	command := app.NewAPIServerCommand()
	command.SetArgs(append(apiserverArgs(opts), extra...))
	return cli.Run(command)
}

func startEtcd(opts options) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = filepath.Join(opts.stateDir, "etcd")
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(opts.stateDir, "etcd.log")}
	client := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.etcdClientPort))}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.etcdPeerPort))}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	// Compaction is the tests' to trigger (410 Gone); etcd does none itself.
	cfg.AutoCompactionRetention = "0"
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-etcd.Server.ReadyNotify():
		return etcd, nil
	case <-time.After(60 * time.Second):
		etcd.Close()
		return nil, errors.New("etcd not ready within 60s")
	}
}

func apiserverArgs(opts options) []string {
	dir := opts.stateDir
	return []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(opts.apiserverPort),
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(opts.etcdClientPort),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + filepath.Join(dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "serving.key"),
		"--client-ca-file=" + filepath.Join(dir, "ca.crt"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--audit-policy-file=" + filepath.Join(dir, "audit-policy.yaml"),
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
		"--profiling=false",
		"--etcd-compaction-interval=0",
	}
}

// prepareStateDir writes the certificates, keys, tokens, audit policy and
// kubeconfig unless a previous start left them there.
func prepareStateDir(opts options) error {
	dir := opts.stateDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.kubeconfig")); err == nil {
		return nil
	}
	caKey, caCert, caPEM, err := makeCA()
	if err != nil {
		return err
	}
	servingPEM, servingKeyPEM, err := makeServingCert(caKey, caCert)
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	adminToken, err := randomToken()
	if err != nil {
		return err
	}
	tokens := fmt.Sprintf("%s,admin,admin-uid,system:masters\n", adminToken)
	for i := range nodeCount {
		token, err := randomToken()
		if err != nil {
			return err
		}
		tokens += fmt.Sprintf("%s,system:node:node-%d,node-%d-uid,system:nodes\n", token, i, i)
	}
	server := "https://127.0.0.1:" + strconv.Itoa(opts.apiserverPort)
	files := map[string][]byte{
		"ca.crt":            caPEM,
		"serving.crt":       servingPEM,
		"serving.key":       servingKeyPEM,
		"sa.key":            pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)),
		"tokens.csv":        []byte(tokens),
		"audit-policy.yaml": []byte(auditPolicy),
		"admin.kubeconfig":  kubeconfig(server, caPEM, adminToken),
	}
	for _, name := range []string{"ca.crt", "serving.crt", "serving.key", "sa.key", "tokens.csv", "audit-policy.yaml", "admin.kubeconfig"} {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o600); err != nil {
			return err
		}
	}
	return nil
}

func makeCA() (*rsa.PrivateKey, *x509.Certificate, []byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "keycloak-sidecar-tests-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, cert, pemBlock("CERTIFICATE", der), nil
}

func makeServingCert(caKey *rsa.PrivateKey, caCert *x509.Certificate) ([]byte, []byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)), nil
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func randomToken() (string, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	return hex.EncodeToString(raw), nil
}

func kubeconfig(server string, caPEM []byte, token string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: admin@test
  context:
    cluster: test
    user: admin
current-context: admin@test
`, server, base64.StdEncoding.EncodeToString(caPEM), token)
}
