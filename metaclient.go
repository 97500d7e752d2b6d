package notsotuf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// MetadataClient is notsotuf's TUF client on its own, for any TUF repository:
// it refreshes trusted metadata (the TUF specification's client workflow)
// and downloads verified target files. [Client] uses the same code to update
// applications; MetadataClient serves tools that need plain TUF, such as the
// TUF conformance suite's client (cmd/notsotuf-conformance).
//
// Trusted metadata is kept unversioned in Dir as <role>.json. Every
// download is held to the default minimum rate (see ClientConfig.MinRate);
// the context passed bounds the whole call. Credentials in a URL
// (user:password@) are sent as basic authentication and never appear in
// errors.
type MetadataClient struct {
	Fs          afero.Fs         // nil means the operating system's
	Dir         string           // trusted metadata directory
	MetadataURL string           // base URL of the repository's metadata
	HTTPClient  *http.Client     // nil means a client with Go's default transport settings
	Now         func() time.Time // reference time for expiry; nil means the wall clock
	Logger      *slog.Logger     // nil means silent

	tuf *tufClient
}

// Init makes root the trusted root: it is written to Dir/root.json as is,
// without any check or network access (the conformance suite's init).
func (m *MetadataClient) Init(root []byte) error {
	fsys := m.fs()
	if err := fsys.MkdirAll(m.Dir, 0o755); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	return writeFileAtomic(fsys, filepath.Join(m.Dir, "root.json"), root, 0o644)
}

func (m *MetadataClient) fs() afero.Fs {
	if m.Fs == nil {
		return afero.NewOsFs()
	}
	return m.Fs
}

func (m *MetadataClient) client() (*tufClient, error) {
	if m.tuf != nil {
		return m.tuf, nil
	}
	base, user, err := checkBaseURL("metadata", m.MetadataURL)
	if err != nil {
		return nil, err
	}
	now, log := m.Now, m.Logger
	if now == nil {
		now = defaultNow
	}
	if log == nil {
		log = discardLogger()
	}
	rem := newRemote(m.HTTPClient, nil)
	rem.addCredentials(base, user)
	m.tuf = &tufClient{fs: m.fs(), dir: m.Dir, metadataURL: base, remote: rem, now: now, log: log}
	return m.tuf, nil
}

// Refresh updates the trusted metadata from the repository: root rotation,
// timestamp, snapshot and top-level targets, each verified and persisted.
// A failed check is a *[SecurityError] (errors.Is(err, [ErrSecurity])).
func (m *MetadataClient) Refresh(ctx context.Context) error {
	c, err := m.client()
	if err != nil {
		return err
	}
	return c.refresh(ctx)
}

// Download refreshes the metadata, finds target name (following
// delegations) and stores its verified content in dir under a file name
// derived from name (path-escaped, so that it stays inside dir). A file that
// is already there with the signed length and hashes is not downloaded
// again. It returns the stored file's path.
func (m *MetadataClient) Download(ctx context.Context, name, targetBaseURL, dir string) (string, error) {
	base, user, err := checkBaseURL("targets", targetBaseURL)
	if err != nil {
		return "", err
	}
	c, err := m.client()
	if err != nil {
		return "", err
	}
	c.remote.addCredentials(base, user)
	if err := c.refresh(ctx); err != nil {
		return "", err
	}
	tf, err := c.targetInfo(ctx, name)
	if err != nil {
		return "", err
	}
	if tf == nil {
		return "", fmt.Errorf("target %q: not listed in the repository's targets metadata", name)
	}
	fsys := m.fs()
	dst := filepath.Join(dir, url.PathEscape(name))
	if old, err := readCacheFile(fsys, dst, tf.Length); err == nil && tf.VerifyLengthHashes(old) == nil {
		return dst, nil
	}
	escaped := *tf
	escaped.Path = escapePath(name)
	data, err := c.remote.fetchBytes(ctx, c.targetURL(base, &escaped), tf.Length)
	if err != nil {
		var dl *metadata.ErrDownloadLengthMismatch
		if errors.As(err, &dl) {
			return "", &SecurityError{File: name, Err: err}
		}
		return "", err
	}
	if err := tf.VerifyLengthHashes(data); err != nil {
		return "", &SecurityError{File: name, Err: err}
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dst, writeFileAtomic(fsys, dst, data, 0o644)
}

// escapePath escapes each segment of a target path for use in a URL.
func escapePath(p string) string {
	u := url.URL{Path: p}
	return u.EscapedPath()
}
