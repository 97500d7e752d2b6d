package s3deploy_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/notsotuf/notsotuf"
	"github.com/notsotuf/notsotuf/internal/s3deploy"
	"github.com/notsotuf/notsotuf/internal/s3test"
	"github.com/spf13/afero"
)

// BenchmarkDeployS3 deploys a repository with one 100 MiB release (a
// bundle of incompressible data, so the archive is 100 MiB too) to
// versitygw on loopback, into an empty prefix each time, and then deploys
// it again (nothing to upload). It reports the objects and MiB uploaded,
// the time of the no-op deploy, and the ratio of the deploy's time to one
// plain PutObject of the archive alone with minio-go's defaults (the same
// bytes to the same server, measured in the same run).
func BenchmarkDeployS3(b *testing.B) {
	srv := s3test.StartT(b)
	ctx := context.Background()
	if err := srv.CreateBucket(ctx, "updates", true); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	bundle := filepath.Join(dir, "bundle")
	data := make([]byte, 100<<20)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i+8 <= len(data); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	must(b, os.MkdirAll(bundle, 0o755))
	must(b, os.WriteFile(filepath.Join(bundle, "app.bin"), data, 0o644))
	data = nil
	cfg := notsotuf.DefaultConfig("big")
	cfg.RepoDir, cfg.KeysDir, cfg.ConsistentSnapshot = filepath.Join(dir, "repository"), filepath.Join(dir, "keystore"), true
	repo := &notsotuf.Repository{Fs: afero.NewOsFs(), Config: cfg, Now: func() time.Time { return testNow }}
	must(b, repo.Init())
	res, err := repo.Add(ctx, notsotuf.AddOptions{Version: "1.0", BundleDir: bundle})
	must(b, err)
	archive := filepath.Join(cfg.RepoDir, "targets", res.Archive.SHA256+"."+res.Archive.Name)

	env := map[string]string{}
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	dest := func() *s3deploy.Destination {
		d, err := s3deploy.New(s3deploy.Config{URL: "s3://updates/big", Endpoint: srv.Endpoint, Getenv: func(k string) string { return env[k] }})
		must(b, err)
		must(b, d.Check(ctx))
		return d
	}
	c, err := srv.Client()
	must(b, err)
	clear := func() {
		for obj := range c.ListObjects(ctx, "updates", minio.ListObjectsOptions{Prefix: "big/", Recursive: true}) {
			must(b, obj.Err)
			must(b, c.RemoveObject(ctx, "updates", obj.Key, minio.RemoveObjectOptions{}))
		}
	}
	var deployTime, putTime, noopTime time.Duration
	var rep *notsotuf.DeployReport
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		clear()
		b.StartTimer()
		start := time.Now()
		rep, err = notsotuf.DeployTo(ctx, afero.NewOsFs(), cfg.RepoDir, dest(), notsotuf.DeployOptions{})
		must(b, err)
		deployTime += time.Since(start)
		b.StopTimer()

		start = time.Now()
		again, err := notsotuf.DeployTo(ctx, afero.NewOsFs(), cfg.RepoDir, dest(), notsotuf.DeployOptions{})
		must(b, err)
		noopTime += time.Since(start)
		if len(again.Copied) != 0 {
			b.Fatalf("second deploy uploaded %v", again.Copied)
		}

		f, err := os.Open(archive)
		must(b, err)
		fi, err := f.Stat()
		must(b, err)
		start = time.Now()
		_, err = c.PutObject(ctx, "updates", "baseline/archive", f, fi.Size(), minio.PutObjectOptions{})
		putTime += time.Since(start)
		f.Close()
		must(b, err)
		b.StartTimer()
	}
	b.StopTimer()
	b.Logf("deploy: %d objects, %d bytes, %.2f s; PutObject of the archive alone: %.2f s; deploy again: %d ms",
		len(rep.Copied), rep.Bytes, deployTime.Seconds()/float64(b.N), putTime.Seconds()/float64(b.N), noopTime.Milliseconds()/int64(b.N))
	b.ReportMetric(float64(len(rep.Copied)), "objects")
	b.ReportMetric(float64(rep.Bytes)/(1<<20), "MiB")
	b.ReportMetric(float64(rep.Bytes)/(1<<20)/(deployTime.Seconds()/float64(b.N)), "MiB/s")
	b.ReportMetric(deployTime.Seconds()/putTime.Seconds(), "deploy/put")
	b.ReportMetric(float64(noopTime.Milliseconds())/float64(b.N), "noop-ms")
}
