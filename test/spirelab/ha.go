package spirelab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"text/template"
	"time"
)

// SPIRE's high-availability mode (several servers of one trust domain on one
// SQL datastore, https://spiffe.io/docs/latest/planning/scaling_spire/): the
// lab runs PostgreSQL on loopback and servers that share it and one
// UpstreamAuthority "disk" CA, as the SPIRE documentation sets them up.

// PostgresBinDir returns the directory of initdb and postgres: Debian's
// postgresql package puts them in /usr/lib/postgresql/<version>/bin, not
// on PATH. An error says what to install.
func PostgresBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	for i := len(matches) - 1; i >= 0; i-- {
		dir := filepath.Dir(matches[i])
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found: install Debian's postgresql package (apt-get install -y postgresql)")
}

// Postgres is a PostgreSQL server the lab started on 127.0.0.1.
type Postgres struct {
	*Proc
	Port int
	// Dir holds the cluster; it is outside the lab directory because the
	// server runs as the postgres user, who cannot enter a test's private
	// temporary directory.
	Dir string
}

// ConnString is a lib/pq connection string to database db.
func (p *Postgres) ConnString(db string) string {
	return fmt.Sprintf("dbname=%s user=postgres host=127.0.0.1 port=%d sslmode=disable", db, p.Port)
}

// asPostgres runs a PostgreSQL binary as the postgres user when the lab
// runs as root (initdb and postgres refuse to run as root). The command is
// an absolute path, as Lab.Start wants for programs outside the lab's bin.
func asPostgres(bin string, args ...string) (string, []string, error) {
	if os.Geteuid() != 0 {
		return bin, args, nil
	}
	ru, err := exec.LookPath("runuser")
	if err != nil {
		return "", nil, fmt.Errorf("spirelab: running PostgreSQL as root needs runuser (util-linux): %w", err)
	}
	return ru, append([]string{"-u", "postgres", "--", bin}, args...), nil
}

// system runs a program from PATH to completion.
func system(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := execCommand(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %v: %w: %s", name, args, err, lastLines(string(out), 5))
	}
	return string(out), nil
}

// StartPostgres creates a cluster (trust authentication, loopback only),
// starts it and creates database db.
func (l *Lab) StartPostgres(ctx context.Context, db string) (*Postgres, error) {
	binDir, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ccnp-pg-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("spirelab: running as root needs the postgres user (from the postgresql package): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{data, sock} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	name, args, err := asPostgres(filepath.Join(binDir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions")
	if err != nil {
		return nil, err
	}
	if out, err := system(ctx, dir, name, args...); err != nil {
		return nil, fmt.Errorf("spirelab: initdb: %w\n%s", err, out)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Port: port, Dir: dir}
	l.say("postgres on 127.0.0.1:%d (%s)", port, data)
	if name, args, err = asPostgres(filepath.Join(binDir, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", sock,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"); err != nil {
		return nil, err
	}
	if pg.Proc, err = l.Start("postgres", name, args...); err != nil {
		return nil, err
	}
	err = waitFor(ctx, "postgres", pg.Proc, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return err
		}
		c.Close()
		_, err = system(ctx, dir, "psql", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-c", "SELECT 1")
		return err
	})
	if err != nil {
		return nil, err
	}
	if out, err := system(ctx, dir, "psql", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-c", "CREATE DATABASE "+db); err != nil {
		return nil, fmt.Errorf("spirelab: create database %s: %w\n%s", db, err, out)
	}
	return pg, nil
}

// Close stops the server and removes its cluster.
func (p *Postgres) Close() {
	p.Stop(10 * time.Second)
	_ = os.RemoveAll(p.Dir)
}

// HAServerConfig is one server of an HA deployment.
type HAServerConfig struct {
	// Name tells the servers apart (directories, logs).
	Name string
	// SimRoot and PCSURL as in ServerConfig.
	SimRoot, PCSURL string
	// ConnString is the shared PostgreSQL datastore.
	ConnString string
	// UpstreamCert and UpstreamKey are the shared UpstreamAuthority "disk"
	// CA (WriteUpstreamCA).
	UpstreamCert, UpstreamKey string
	// CheckpointKeyFile is the ccnp plugin's shared checkpoint key.
	CheckpointKeyFile string
	// AgentTTL as in ServerConfig.
	AgentTTL time.Duration
}

var haServerConf = template.Must(template.New("ha").Parse(`server {
  bind_address = "127.0.0.1"
  bind_port    = "{{.Port}}"
  trust_domain = "{{.TD}}"
  data_dir     = "{{.Data}}"
  socket_path  = "{{.Socket}}"
  log_level    = "DEBUG"
{{- if .AgentTTL}}
  agent_ttl    = "{{.AgentTTL}}"
{{- end}}
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type     = "postgres"
      connection_string = "{{.Conn}}"
    }
  }
  KeyManager "memory" {
    plugin_data {}
  }
  UpstreamAuthority "disk" {
    plugin_data {
      cert_file_path = "{{.UpCert}}"
      key_file_path  = "{{.UpKey}}"
    }
  }
  NodeAttestor "ccnp" {
    plugin_cmd      = "{{.Plugin}}"
    plugin_checksum = "{{.Checksum}}"
    plugin_data {
      sim { trusted_root_file = "{{.SimRoot}}" }
      tdx {
        collateral { pcs_url = "{{.PCSURL}}" }
      }
      checkpoint_key_file = "{{.CkptKey}}"
    }
  }
}
`))

// StartHAServer runs one spire-server of an HA deployment until it answers
// its health check. Its log is Dir/<name>.log.
func (l *Lab) StartHAServer(ctx context.Context, cfg HAServerConfig) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	plugin := filepath.Join(l.Bin, "ccnp-server-nodeattestor")
	sum, err := Checksum(plugin)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(l.Dir, cfg.Name)
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	s := &Server{lab: l, Port: port, Socket: filepath.Join(data, "api.sock")}
	var ttl string
	if cfg.AgentTTL > 0 {
		ttl = cfg.AgentTTL.String()
	}
	conf := filepath.Join(l.Dir, cfg.Name+".conf")
	if err := writeTemplate(conf, haServerConf, map[string]any{
		"Port": port, "TD": l.TrustDomain, "Data": data, "Socket": s.Socket, "AgentTTL": ttl,
		"Conn": cfg.ConnString, "UpCert": cfg.UpstreamCert, "UpKey": cfg.UpstreamKey,
		"Plugin": plugin, "Checksum": sum, "SimRoot": cfg.SimRoot, "PCSURL": cfg.PCSURL, "CkptKey": cfg.CheckpointKeyFile,
	}); err != nil {
		return nil, err
	}
	l.say("spire-server %s on 127.0.0.1:%d, datastore postgres (%s)", cfg.Name, port, conf)
	if s.Proc, err = l.Start(cfg.Name, filepath.Join(l.Bin, "spire-server"), "run", "-config", conf); err != nil {
		return nil, err
	}
	err = waitFor(ctx, "spire-server "+cfg.Name, s.Proc, func() error {
		_, err := l.Run(ctx, "spire-server", "healthcheck", "-socketPath", s.Socket)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// WriteUpstreamCA writes a self-signed CA (P-256) for UpstreamAuthority
// "disk", shared by the servers of an HA deployment so that they issue
// under one root, and returns the certificate and key paths.
func (l *Lab) WriteUpstreamCA() (certPath, keyPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"ccnp-spire lab"}, CommonName: "upstream CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(l.Dir, "upstream.crt"), filepath.Join(l.Dir, "upstream.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}
