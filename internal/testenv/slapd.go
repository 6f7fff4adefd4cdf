package testenv

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// SlapdOptions configures a throwaway slapd. The zero value gives an mdb
// database under dc=example,dc=org with rootdn cn=admin and no TLS.
type SlapdOptions struct {
	Suffix   string // default dc=example,dc=org
	RootDN   string // default cn=admin,<suffix>
	RootPW   string // default "secret"
	TLS      bool   // generate a CA and a server certificate, enable StartTLS and listen on ldaps:// too (LDAPSURL)
	Overlays []string
	// DatabaseConfig is appended to the mdb database section verbatim
	// (e.g. "limits dn.exact=... size.prtotal=10").
	DatabaseConfig string
	// LDIF is loaded with slapadd before the first start (the suffix entry
	// is always created first).
	LDIF string
}

// SlapdServer is a running (or stopped) slapd owned by one test.
type SlapdServer struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	port    int
	tlsPort int // ldaps:// listener (TLS only)
	opts    SlapdOptions
	caFile  string
	caPEM   []byte
	mu      sync.Mutex
	cmd     *exec.Cmd
	waitErr chan error
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Slapd starts a throwaway OpenLDAP slapd on a free loopback port with its
// data in t.TempDir(). The binary comes from DIRSYNCD_TEST_SLAPD (default
// /usr/sbin/slapd), schemas from DIRSYNCD_TEST_LDAP_SCHEMA_DIR (default
// /etc/ldap/schema) and modules from DIRSYNCD_TEST_LDAP_MODULE_DIR (default
// /usr/lib/ldap). It is killed when the test ends.
func Slapd(t testing.TB, opts SlapdOptions) *SlapdServer {
	t.Helper()
	bin := envOr("DIRSYNCD_TEST_SLAPD", "/usr/sbin/slapd")
	if _, err := os.Stat(bin); err != nil {
		Missing(t, "slapd binary %s: %v", bin, err)
	}
	schemaDir := envOr("DIRSYNCD_TEST_LDAP_SCHEMA_DIR", "/etc/ldap/schema")
	moduleDir := envOr("DIRSYNCD_TEST_LDAP_MODULE_DIR", "/usr/lib/ldap")
	for _, s := range []string{"core", "cosine", "inetorgperson", "nis"} {
		if _, err := os.Stat(filepath.Join(schemaDir, s+".schema")); err != nil {
			Missing(t, "LDAP schema %s: %v", s, err)
		}
	}
	if opts.Suffix == "" {
		opts.Suffix = "dc=example,dc=org"
	}
	if opts.RootDN == "" {
		opts.RootDN = "cn=admin," + opts.Suffix
	}
	if opts.RootPW == "" {
		opts.RootPW = "secret"
	}
	dir := t.TempDir()
	s := &SlapdServer{t: t, bin: bin, dir: dir, opts: opts, port: freePort(t)}
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatalf("testenv: slapd data dir: %v", err)
	}

	var conf strings.Builder
	for _, sc := range []string{"core", "cosine", "inetorgperson", "nis"} {
		fmt.Fprintf(&conf, "include %s\n", filepath.Join(schemaDir, sc+".schema"))
	}
	fmt.Fprintf(&conf, "pidfile %s\nargsfile %s\n", filepath.Join(dir, "slapd.pid"), filepath.Join(dir, "slapd.args"))
	fmt.Fprintf(&conf, "modulepath %s\nmoduleload back_mdb\n", moduleDir)
	for _, o := range opts.Overlays {
		fmt.Fprintf(&conf, "moduleload %s\n", o)
	}
	if opts.TLS {
		s.tlsPort = freePort(t)
		s.writeTLS()
		fmt.Fprintf(&conf, "TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n",
			s.caFile, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	}
	fmt.Fprintf(&conf, "sizelimit unlimited\n")
	fmt.Fprintf(&conf, "database mdb\nmaxsize 1073741824\nsuffix %q\nrootdn %q\nrootpw %s\ndirectory %s\n",
		opts.Suffix, opts.RootDN, opts.RootPW, filepath.Join(dir, "db"))
	fmt.Fprintf(&conf, "index objectClass eq\nindex entryUUID eq\nindex uid,mail,cn eq\nindex modifyTimestamp eq\n")
	for _, o := range opts.Overlays {
		fmt.Fprintf(&conf, "overlay %s\n", o)
		if o == "refint" {
			fmt.Fprintf(&conf, "refint_attributes member uniqueMember\n")
		}
	}
	if opts.DatabaseConfig != "" {
		conf.WriteString(opts.DatabaseConfig + "\n")
	}
	s.conf = filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(s.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatalf("testenv: write slapd.conf: %v", err)
	}

	base := suffixEntry(opts.Suffix)
	s.slapadd(base + "\n" + opts.LDIF)
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// suffixEntry returns the LDIF of the suffix entry (dc=... or o=...).
func suffixEntry(suffix string) string {
	first := strings.SplitN(suffix, ",", 2)[0]
	kv := strings.SplitN(first, "=", 2)
	if len(kv) == 2 && strings.EqualFold(kv[0], "dc") {
		return fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: %s\no: %s\n", suffix, kv[1], kv[1])
	}
	return fmt.Sprintf("dn: %s\nobjectClass: organization\no: %s\n", suffix, kv[len(kv)-1])
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is ldap://127.0.0.1:PORT.
func (s *SlapdServer) URL() string { return fmt.Sprintf("ldap://127.0.0.1:%d", s.port) }

// LDAPSURL is ldaps://127.0.0.1:PORT (TLS only; "" otherwise).
func (s *SlapdServer) LDAPSURL() string {
	if s.tlsPort == 0 {
		return ""
	}
	return fmt.Sprintf("ldaps://127.0.0.1:%d", s.tlsPort)
}

// BindDN is the rootdn.
func (s *SlapdServer) BindDN() string { return s.opts.RootDN }

// Password is the rootdn's password.
func (s *SlapdServer) Password() string { return s.opts.RootPW }

// Suffix is the database suffix.
func (s *SlapdServer) Suffix() string { return s.opts.Suffix }

// CAFile is the PEM file of the test CA (TLS only).
func (s *SlapdServer) CAFile() string { return s.caFile }

// CAPEM is the test CA certificate in PEM (TLS only).
func (s *SlapdServer) CAPEM() []byte { return s.caPEM }

// Start starts slapd (again) with the same configuration and data and
// waits until it accepts connections.
func (s *SlapdServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	var stderr bytes.Buffer
	listen := s.URL() + "/"
	if s.tlsPort != 0 {
		listen += " " + s.LDAPSURL() + "/"
	}
	cmd := exec.Command(s.bin, "-f", s.conf, "-h", listen, "-d", "0")
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testenv: start slapd: %v", err)
	}
	s.cmd = cmd
	s.waitErr = make(chan error, 1)
	go func() { s.waitErr <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	ports := []int{s.port}
	if s.tlsPort != 0 {
		ports = append(ports, s.tlsPort)
	}
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]), 200*time.Millisecond)
		if err == nil {
			c.Close()
			if ports = ports[1:]; len(ports) == 0 {
				return
			}
			continue
		}
		select {
		case werr := <-s.waitErr:
			s.cmd = nil
			s.t.Fatalf("testenv: slapd exited at start: %v\n%s", werr, stderr.String())
		case <-time.After(20 * time.Millisecond): // readiness poll of an external process
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("testenv: slapd did not listen within 15s:\n%s", stderr.String())
		}
	}
}

// Stop kills slapd and waits for it to exit; the data stays.
func (s *SlapdServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.waitErr:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.waitErr
	}
	s.cmd = nil
}

// LoadLDIF adds entries offline with slapadd (stopping and restarting
// slapd around it when it runs): fast for large fixtures.
func (s *SlapdServer) LoadLDIF(ldif string) {
	s.t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.Stop()
	}
	s.slapadd(ldif)
	if running {
		s.Start()
	}
}

func (s *SlapdServer) slapadd(ldif string) {
	s.t.Helper()
	if strings.TrimSpace(ldif) == "" {
		return
	}
	// slapadd is slapd itself started under that name (Debian ships a symlink).
	slapadd := envOr("DIRSYNCD_TEST_SLAPADD", filepath.Join(filepath.Dir(s.bin), "slapadd"))
	cmd := exec.Command(slapadd, "-q", "-f", s.conf)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("testenv: slapadd: %v\n%s", err, out)
	}
}

// Modify applies an LDIF change file (changetype: add/modify/modrdn/delete)
// online with ldapmodify (DIRSYNCD_TEST_LDAPMODIFY, default
// /usr/bin/ldapmodify) bound as the rootdn.
func (s *SlapdServer) Modify(ldif string) {
	s.t.Helper()
	bin := envOr("DIRSYNCD_TEST_LDAPMODIFY", "/usr/bin/ldapmodify")
	if _, err := os.Stat(bin); err != nil {
		Missing(s.t, "ldapmodify binary %s: %v", bin, err)
	}
	cmd := exec.Command(bin, "-x", "-H", s.URL(), "-D", s.opts.RootDN, "-w", s.opts.RootPW)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("testenv: ldapmodify: %v\n%s", err, out)
	}
}

// writeTLS generates a CA and a server certificate for 127.0.0.1/localhost.
func (s *SlapdServer) writeTLS() {
	t := s.t
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: CA key: %v", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dirsyncd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: CA cert: %v", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: server key: %v", err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: server cert: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatalf("testenv: server key: %v", err)
	}
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	s.caFile = filepath.Join(s.dir, "ca.crt")
	files := map[string][]byte{
		s.caFile:                           s.caPEM,
		filepath.Join(s.dir, "server.crt"): pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		filepath.Join(s.dir, "server.key"): pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatalf("testenv: write %s: %v", p, err)
		}
	}
}
