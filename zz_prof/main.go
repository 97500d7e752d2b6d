package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/notsotuf/notsotuf"
)

func main() {
	d := "/tmp/prof"
	root, _ := os.ReadFile(d + "/repository/metadata/1.root.json")
	c, err := notsotuf.NewClient(notsotuf.ClientConfig{App: "bench", CurrentVersion: os.Args[1], InstallDir: d + "/app", CacheDir: d + "/cache",
		MetadataURL: "http://127.0.0.1:18555/metadata", TargetsURL: "http://127.0.0.1:18555/targets", TrustedRoot: root})
	if err != nil {
		panic(err)
	}
	f, _ := os.Create("/tmp/cpu.prof")
	pprof.StartCPUProfile(f)
	t := time.Now()
	u, err := c.Update(context.Background())
	pprof.StopCPUProfile()
	fmt.Println(u != nil, err, time.Since(t))
}
