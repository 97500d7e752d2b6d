package main

import (
	"context"
	"os"
	"strings"

	"github.com/notsotuf/notsotuf/internal/s3test"
	"github.com/rogpeppe/go-internal/testscript"
)

// versitygwCondition is the [versitygw] condition: a versitygw binary is
// there (or could be built). With NOTSOTUF_REQUIRE_S3=1 (CI), its absence
// fails the script instead of skipping it.
func versitygwCondition() (bool, error) {
	_, err := s3test.Binary()
	if err != nil && os.Getenv("NOTSOTUF_REQUIRE_S3") == "1" {
		return false, err
	}
	return err == nil, nil
}

// s3server: starts a real S3 server (versitygw, posix backend in
// $WORK/s3data, loopback only) for the rest of the script, with a bucket
// "updates" whose objects anyone may GET (a public bucket, as a CDN origin
// is). It sets S3_ENDPOINT and the credentials (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION) that deploy reads.
func cmdS3Server(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: s3server")
	}
	bin, err := s3test.Binary()
	ts.Check(err)
	srv, err := s3test.Start(bin, ts.MkAbs("s3data"))
	ts.Check(err)
	ts.Defer(func() { srv.Close() })
	ts.Check(srv.CreateBucket(context.Background(), "updates", true))
	ts.Setenv("S3_ENDPOINT", srv.Endpoint)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		ts.Setenv(k, v)
	}
	ts.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}
