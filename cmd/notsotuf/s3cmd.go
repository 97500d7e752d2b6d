package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/notsotuf/notsotuf/internal/s3deploy"
)

// s3Options are the flags of `notsotuf deploy s3://BUCKET[/PREFIX]`.
type s3Options struct {
	endpoint   *string
	region     *string
	pathStyle  *bool
	cacheShort *time.Duration
}

func s3Flags(fs *flag.FlagSet) *s3Options {
	return &s3Options{
		endpoint:   fs.String("endpoint", "", "s3:// only: S3-compatible service `URL` (R2, B2, GCS, MinIO...; default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or AWS)"),
		region:     fs.String("region", "", "s3:// only: bucket `region` (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, or asked from the service)"),
		pathStyle:  fs.Bool("path-style", false, "s3:// only: address the bucket as ENDPOINT/BUCKET (services without virtual-host buckets)"),
		cacheShort: fs.Duration("cache-control-short", 0, "s3:// only: Cache-Control max-age of timestamp.json and the other names whose content changes (0s: no-cache; default: 60s with consistent snapshots, no-cache without)"),
	}
}

// setFlags names an S3 flag that was given, or "".
func (o *s3Options) setFlags(fs *flag.FlagSet) string {
	set := ""
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "endpoint", "region", "path-style", "cache-control-short":
			if set == "" {
				set = f.Name
			}
		}
	})
	return set
}

// cacheControl is the Cache-Control of the short-lived objects: "" for the
// default of the repository's layout.
func (o *s3Options) cacheControl(fs *flag.FlagSet) (string, error) {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "cache-control-short" })
	d := *o.cacheShort
	switch {
	case !given:
		return "", nil
	case d < 0:
		return "", usagef("--cache-control-short %v: want a duration >= 0", d)
	case d < time.Second:
		return "no-cache", nil
	}
	return fmt.Sprintf("public, max-age=%d", int64(d/time.Second)), nil
}

// destination checks the bucket and the credentials and returns it.
func (o *s3Options) destination(env *cliEnv, url string) (*s3deploy.Destination, error) {
	d, err := s3deploy.New(s3deploy.Config{
		URL: url, Endpoint: *o.endpoint, Region: *o.region, PathStyle: *o.pathStyle, Getenv: env.getenv,
	})
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	if err := d.Check(env.ctx); err != nil {
		return nil, fmt.Errorf("deploy: %s: %w", url, err)
	}
	return d, nil
}
