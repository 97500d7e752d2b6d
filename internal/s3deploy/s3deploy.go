// Package s3deploy publishes a notsotuf repository to S3 or an
// S3-compatible object store (R2, B2, GCS in interoperability mode, MinIO,
// Ceph, versitygw): a notsotuf.DeployDestination over minio-go, used by
// `notsotuf deploy s3://BUCKET[/PREFIX]`. It lives apart from the root
// package so that an application importing notsotuf for its client does not
// build an S3 SDK (TestRootPackageHasNoS3SDK checks it).
//
// notsotuf.DeployTo decides what to write and in which order; this package
// stores each file as one object (a multipart upload for large ones, which
// becomes visible only when complete) with Content-Type, Cache-Control and
// the file's sha256 in the user metadata (x-amz-meta-sha256). An object
// counts as unchanged when its size, sha256 (or, for objects uploaded by
// another tool, an ETag that is a plain MD5: single-part uploads only),
// Content-Type and Cache-Control all match and it has no Content-Encoding.
// Requests are retried with exponential backoff by minio-go.
package s3deploy

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/notsotuf/notsotuf"
	"gopkg.in/ini.v1"
)

// Config says where to deploy and how to reach the store.
type Config struct {
	// URL is s3://BUCKET or s3://BUCKET/PREFIX: the repository's
	// metadata/ and targets/ go below PREFIX.
	URL string
	// Endpoint is the URL of an S3-compatible service
	// (http://127.0.0.1:7070, https://ACCOUNT.r2.cloudflarestorage.com,
	// https://storage.googleapis.com). "" means AWS_ENDPOINT_URL_S3, then
	// AWS_ENDPOINT_URL, then AWS S3.
	Endpoint string
	// Region is the bucket's region. "" means AWS_REGION, then
	// AWS_DEFAULT_REGION, then the region of the profile in the shared
	// config file, then asking the service where the bucket is.
	Region string
	// PathStyle addresses the bucket as ENDPOINT/BUCKET/KEY instead of
	// BUCKET.ENDPOINT/KEY (for services without virtual-host buckets;
	// IP-address and localhost endpoints get it anyway).
	PathStyle bool
	// Creds are the credentials; nil means the AWS chain: the environment
	// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the
	// shared credentials and config files (AWS_PROFILE,
	// AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE; SSO and
	// credential_process profiles too), then the EC2/ECS/EKS instance
	// role (unless AWS_EC2_METADATA_DISABLED=true).
	Creds *credentials.Credentials
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Transport carries the requests; nil means minio-go's.
	Transport http.RoundTripper
	// MaxRetries is the number of attempts of a request; 0 means
	// minio-go's default (10, with exponential backoff and jitter).
	MaxRetries int
	// PartSize is the size of the parts of a multipart upload, used for
	// files larger than it; 0 means 16 MiB.
	PartSize uint64
}

// Destination is a bucket (and prefix) that receives a repository. It
// implements notsotuf.DeployDestination.
type Destination struct {
	client   *minio.Client
	bucket   string
	prefix   string // "" or "a/b/" (with the slash)
	partSize uint64

	mu     sync.Mutex
	listed map[string]minio.ObjectInfo // by repository name, filled by List
}

var _ notsotuf.DeployDestination = (*Destination)(nil)

// DefaultPartSize is the multipart part size when Config.PartSize is 0.
const DefaultPartSize = 16 << 20

// ParseURL splits s3://BUCKET[/PREFIX] into the bucket and the prefix
// (without slashes at either end).
func ParseURL(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q: not an s3://BUCKET[/PREFIX] URL", s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return "", "", fmt.Errorf("%q: bucket %q: %v", s, bucket, err)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		for _, seg := range strings.Split(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "?#\\") {
				return "", "", fmt.Errorf("%q: prefix %q: want path segments without empty, '.', '..', '?', '#' or '\\' parts", s, prefix)
			}
		}
	}
	return bucket, prefix, nil
}

// New checks cfg, finds credentials and returns the destination. It does
// not touch the network: Check does.
func New(cfg Config) (*Destination, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	bucket, prefix, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	endpoint := cfg.Endpoint
	for _, v := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if endpoint == "" {
			endpoint = getenv(v)
		}
	}
	host, secure := "s3.amazonaws.com", true
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		switch {
		case !strings.Contains(endpoint, "://") || err == nil && u.Scheme != "http" && u.Scheme != "https":
			return nil, fmt.Errorf("--endpoint %q: want http:// or https:// and a host", endpoint)
		case err != nil:
			return nil, fmt.Errorf("--endpoint: %v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			return nil, fmt.Errorf("--endpoint %q: want http:// or https:// and a host", endpoint)
		case u.User != nil:
			return nil, fmt.Errorf("--endpoint: credentials in the URL are not used (and would be printed): give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile")
		case u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
			// (Not repeated whole: a query may hold a signature.)
			return nil, fmt.Errorf("--endpoint %s://%s...: want http(s)://HOST[:PORT] without a path or query", u.Scheme, u.Host)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	region := cfg.Region
	for _, v := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if region == "" {
			region = getenv(v)
		}
	}
	if region == "" {
		region = profileRegion(getenv)
	}
	creds := cfg.Creds
	if creds == nil {
		providers := []credentials.Provider{&envCreds{getenv: getenv}, &credentials.FileAWSCredentials{Profile: getenv("AWS_PROFILE")}}
		if !strings.EqualFold(getenv("AWS_EC2_METADATA_DISABLED"), "true") {
			providers = append(providers, &credentials.IAM{Client: &http.Client{Timeout: 5 * time.Second}})
		}
		creds = credentials.NewChainCredentials(providers)
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	opts := &minio.Options{
		Creds: creds, Secure: secure, Region: region, BucketLookup: lookup,
		Transport: cfg.Transport, MaxRetries: cfg.MaxRetries,
	}
	client, err := minio.New(host, opts)
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", host, err)
	}
	d := &Destination{client: client, bucket: bucket, partSize: cfg.PartSize}
	if prefix != "" {
		d.prefix = prefix + "/"
	}
	if d.partSize == 0 {
		d.partSize = DefaultPartSize
	}
	return d, nil
}

// envCreds is minio-go's EnvAWS provider reading Config.Getenv.
type envCreds struct {
	getenv func(string) string
	done   bool
}

func (e *envCreds) Retrieve() (credentials.Value, error) {
	e.done = true
	id, secret := e.getenv("AWS_ACCESS_KEY_ID"), e.getenv("AWS_SECRET_ACCESS_KEY")
	if id == "" || secret == "" {
		return credentials.Value{SignerType: credentials.SignatureAnonymous}, nil
	}
	return credentials.Value{AccessKeyID: id, SecretAccessKey: secret, SessionToken: e.getenv("AWS_SESSION_TOKEN"), SignerType: credentials.SignatureV4}, nil
}

func (e *envCreds) RetrieveWithCredContext(*credentials.CredContext) (credentials.Value, error) {
	return e.Retrieve()
}

func (e *envCreds) IsExpired() bool { return !e.done }

// profileRegion reads the region of the profile (AWS_PROFILE, else
// default) from the shared config file (AWS_CONFIG_FILE, else
// ~/.aws/config); "" when there is none.
func profileRegion(getenv func(string) string) string {
	file := getenv("AWS_CONFIG_FILE")
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		file = filepath.Join(home, ".aws", "config")
	}
	cfg, err := ini.Load(file)
	if err != nil {
		return ""
	}
	profile := getenv("AWS_PROFILE")
	section := "default"
	if profile != "" && profile != "default" {
		section = "profile " + profile
	}
	return cfg.Section(section).Key("region").String()
}

// String is the destination as an s3:// URL.
func (d *Destination) String() string {
	return "s3://" + d.bucket + "/" + strings.TrimSuffix(d.prefix, "/")
}

func (d *Destination) key(name string) string { return d.prefix + name }

func (d *Destination) objectURL(name string) string {
	return "s3://" + d.bucket + "/" + d.key(name)
}

// Check makes sure that credentials were found and that the bucket exists
// and can be read with them, with an error saying what to fix.
func (d *Destination) Check(ctx context.Context) error {
	v, err := d.client.GetCreds()
	if err != nil {
		return fmt.Errorf("s3 credentials: %w", err)
	}
	if v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return errors.New("no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE with a shared credentials file")
	}
	ok, err := d.client.BucketExists(ctx, d.bucket)
	if err != nil {
		return fmt.Errorf("bucket %s at %s: %w", d.bucket, d.client.EndpointURL().Host, describe(err))
	}
	if !ok {
		return fmt.Errorf("bucket %s does not exist at %s: create it first (its name, --endpoint and --region must match)", d.bucket, d.client.EndpointURL().Host)
	}
	return nil
}

// List implements notsotuf.DeployDestination: the objects directly below
// PREFIX/metadata/ and PREFIX/targets/.
func (d *Destination) List(ctx context.Context) ([]string, error) {
	listed := map[string]minio.ObjectInfo{}
	var names []string
	for _, sub := range []string{"targets/", "metadata/"} {
		for obj := range d.client.ListObjects(ctx, d.bucket, minio.ListObjectsOptions{Prefix: d.key(sub)}) {
			if obj.Err != nil {
				return nil, fmt.Errorf("list s3://%s/%s: %w", d.bucket, d.key(sub), describe(obj.Err))
			}
			name := strings.TrimPrefix(obj.Key, d.prefix)
			if strings.HasSuffix(name, "/") || path.Dir(name)+"/" != sub {
				continue // a "directory" below metadata/ or targets/
			}
			listed[name] = obj
			names = append(names, name)
		}
	}
	d.mu.Lock()
	d.listed = listed
	d.mu.Unlock()
	return names, nil
}

// Unchanged implements notsotuf.DeployDestination.
func (d *Destination) Unchanged(ctx context.Context, f *notsotuf.DeployFile) (bool, error) {
	d.mu.Lock()
	obj, ok := d.listed[f.Name]
	d.mu.Unlock()
	if !ok || obj.Size != f.Size {
		return false, nil
	}
	st, err := d.client.StatObject(ctx, d.bucket, d.key(f.Name), minio.StatObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).StatusCode == http.StatusNotFound {
			return false, nil
		}
		return false, fmt.Errorf("stat %s: %w", d.objectURL(f.Name), describe(err))
	}
	if st.Size != f.Size || st.ContentType != f.ContentType || st.Metadata.Get("Cache-Control") != f.CacheControl ||
		st.Metadata.Get("Content-Encoding") != "" {
		return false, nil
	}
	sum, err := f.SHA256()
	if err != nil {
		return false, err
	}
	for k, v := range st.UserMetadata {
		if strings.EqualFold(k, "sha256") {
			return v == sum, nil
		}
	}
	// Uploaded by another tool: a single-part upload's ETag is the MD5
	// of the content (a multipart one is "<md5 of md5s>-<parts>").
	etag := strings.Trim(st.ETag, `"`)
	if !md5ETag.MatchString(etag) {
		return false, nil
	}
	local, err := fileMD5(f)
	if err != nil {
		return false, err
	}
	return local == strings.ToLower(etag), nil
}

var md5ETag = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)

func fileMD5(f *notsotuf.DeployFile) (string, error) {
	in, err := f.Open()
	if err != nil {
		return "", err
	}
	defer in.Close()
	h := md5.New()
	if _, err := io.Copy(h, in); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Put implements notsotuf.DeployDestination: one PutObject, a multipart
// upload above the part size (visible only once complete; aborted on
// failure).
func (d *Destination) Put(ctx context.Context, f *notsotuf.DeployFile) error {
	sum, err := f.SHA256()
	if err != nil {
		return err
	}
	in, err := f.Open()
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = d.client.PutObject(ctx, d.bucket, d.key(f.Name), in, f.Size, minio.PutObjectOptions{
		ContentType:  f.ContentType,
		CacheControl: f.CacheControl,
		UserMetadata: map[string]string{"sha256": sum},
		PartSize:     d.partSize,
		Progress:     progressReader{f},
		// Content-MD5 lets the store check every request's body; a
		// streaming-signed body (aws-chunked) would have some stores
		// keep "Content-Encoding: aws-chunked" on the object.
		SendContentMd5:       true,
		DisableContentSha256: true,
	})
	if err != nil {
		if f.Size > int64(d.partSize) {
			// Do not leave the parts of an unfinished upload behind
			// (they cost storage until a lifecycle rule removes them).
			_ = d.client.RemoveIncompleteUpload(context.WithoutCancel(ctx), d.bucket, d.key(f.Name))
		}
		return fmt.Errorf("upload to %s: %w", d.objectURL(f.Name), describe(err))
	}
	return nil
}

// Remove implements notsotuf.DeployDestination.
func (d *Destination) Remove(ctx context.Context, name string) error {
	if err := d.client.RemoveObject(ctx, d.bucket, d.key(name), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", d.objectURL(name), describe(err))
	}
	return nil
}

// describe turns an S3 error response into a sentence with its code, and
// adds what to check for the common ones.
func describe(err error) error {
	resp := minio.ToErrorResponse(err)
	if resp.Code == "" {
		return err
	}
	msg := resp.Code
	if resp.Message != "" {
		msg += ": " + resp.Message
	}
	switch resp.Code {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken":
		msg += " (check the credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and that they may write this bucket)"
	case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException":
		msg += " (check --region and --endpoint)"
	case "NoSuchBucket":
		msg += " (create the bucket first)"
	}
	return &s3Error{msg, err}
}

// s3Error is an S3 error response said in one line.
type s3Error struct {
	msg string
	err error
}

func (e *s3Error) Error() string { return e.msg }
func (e *s3Error) Unwrap() error { return e.err }

// progressReader is the reader minio-go reads as bytes go out; it reports
// them to the deploy's progress.
type progressReader struct{ f *notsotuf.DeployFile }

func (p progressReader) Read(b []byte) (int, error) {
	p.f.Written(int64(len(b)))
	return len(b), nil
}
